"""Budget sweeps: list options expand into labelled entries at load; the sweep table and figure;
median queries on the leaderboard."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_MATRIX, run_cli

from bench.config import ComponentSpec, load_matrix
from bench.errors import UserError
from bench.metrics.stats import bootstrap_mean_ratio_ci, bootstrap_ratio_ci
from bench.report import asr_long, leaderboard
from bench.sweep import expand_sweeps, parse_sweep_label
from bench.sweep_figure import sweep_table


def _matrix(tmp_path, attacks: dict, **top) -> str:
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["attacks"] = attacks
    data.update(top)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# -- expansion ---------------------------------------------------------------------------------------
def test_a_list_expands_into_labelled_entries_with_one_value_each(tmp_path):
    cfg = load_matrix(_matrix(tmp_path, {"pgd": {"eps": [0.004, 0.008, 0.016], "step": 0.002, "steps": 3},
                                         "wide": {"attack": "fgsm", "eps": [0.01, 0.02]},
                                         "mifgsm": {"eps": 0.03}}), prepare=False, quiet=True)
    got = [(a.label, a.name, a.kwargs) for a in cfg.attacks]
    assert got == [
        ("pgd@eps=0.004", "pgd", {"eps": 0.004, "step": 0.002, "steps": 3}),
        ("pgd@eps=0.008", "pgd", {"eps": 0.008, "step": 0.002, "steps": 3}),
        ("pgd@eps=0.016", "pgd", {"eps": 0.016, "step": 0.002, "steps": 3}),
        ("wide@eps=0.01", "fgsm", {"eps": 0.01}),
        ("wide@eps=0.02", "fgsm", {"eps": 0.02}),
        ("mifgsm", "mifgsm", {"eps": 0.03}),
    ]
    assert parse_sweep_label("pgd@eps=0.008") == ("pgd", "eps", "0.008")
    assert parse_sweep_label("mifgsm") is None


def test_the_sweep_demo_matrix_expands_its_three_sweeps():
    cfg = load_matrix("sweep-demo", prepare=False, quiet=True)
    labels = [a.label for a in cfg.attacks]
    assert labels[:4] == [f"pgd@eps={e}" for e in (0.004, 0.008, 0.016, 0.031)]
    assert [a for a in labels if a.startswith("eraser")] == [f"eraser@step={s}" for s in (0.005, 0.01, 0.02, 0.04)]
    assert {a.kwargs["levels"] for a in cfg.attacks if a.name == "eraser"} == {"full"}


def test_each_swept_value_is_checked_like_a_single_value(tmp_path):
    with pytest.raises(UserError, match=r"attacks\.pgd@eps=1\.5\.eps must be a number in \[0, 1\]"):
        load_matrix(_matrix(tmp_path, {"pgd": {"eps": [0.01, 1.5]}}), prepare=False, quiet=True)


def test_a_list_for_a_list_typed_parameter_is_not_expanded():
    # the eraser's `levels` takes a list of W+ rows: it is one value, not a sweep
    specs = [ComponentSpec("eraser", "eraser", {"levels": [0, 1, 2], "step": [0.005, 0.01]})]
    out = expand_sweeps(specs, "m.yaml")
    assert [(s.label, s.kwargs) for s in out] == [
        ("eraser@step=0.005", {"levels": [0, 1, 2], "step": 0.005}),
        ("eraser@step=0.01", {"levels": [0, 1, 2], "step": 0.01}),
    ]
    alone = expand_sweeps([ComponentSpec("eraser", "eraser", {"levels": [0, 1, 2]})], "m.yaml")
    assert [(s.label, s.kwargs) for s in alone] == [("eraser", {"levels": [0, 1, 2]})]


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": [], "steps": 2}, "attacks.pgd.eps is an empty list"),
    ({"eps": [0.01, 0.01]}, "attack 'pgd@eps=0.01' appears twice"),
])
def test_bad_sweeps_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        expand_sweeps([ComponentSpec("pgd", "pgd", kwargs)], "m.yaml")


def test_at_sign_is_kept_for_sweep_labels():
    with pytest.raises(UserError, match="contains '@'"):
        expand_sweeps([ComponentSpec("pgd@x", "pgd", {})], "m.yaml")


def test_labels_that_share_a_shard_folder_are_refused():
    specs = [ComponentSpec("pgd_eps_0.01", "pgd", {}), ComponentSpec("pgd", "pgd", {"eps": [0.01]})]
    with pytest.raises(UserError, match="would share the stored folder 'pgd_eps_0.01'"):
        expand_sweeps(specs, "m.yaml")


def test_two_lists_in_one_entry_is_one_line_exit_2(tmp_path):
    path = _matrix(tmp_path, {"pgd": {"eps": [0.01, 0.02], "step": [0.001, 0.002]}})
    proc = run_cli("run", "--matrix", path, "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "attacks.pgd gives lists for eps and step" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_bench_run_of_a_sweep_renders_its_entries_table_and_figures(tmp_path):
    path = _matrix(tmp_path, {"fgsm": {"eps": [0.01, 0.035]}, "pgd": {"eps": 0.035, "step": 0.01, "steps": 2}},
                   dataset={"name": "synthetic", "n": 8, "size": 32})
    proc = run_cli("run", "--matrix", path, "--out", str(tmp_path / "r"), "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = next((tmp_path / "r" / "tiny").iterdir())
    records = pd.read_parquet(run / "records" / "records.parquet")
    assert list(dict.fromkeys(records["attack"])) == ["fgsm@eps=0.01", "fgsm@eps=0.035", "pgd"]
    assert (records.loc[records["attack"] == "fgsm@eps=0.035", "budget_eps"] == "0.035").all()
    assert (run / "shards" / "adv" / "checker" / "fgsm_eps_0.01").is_dir()  # own shards per value
    table = pd.read_csv(run / "tables" / "sweep.csv")
    assert list(table["attack"]) == ["fgsm@eps=0.01", "fgsm@eps=0.035", "pgd"] * 2
    assert list(table["source"]) == ["checker"] * 3 + ["laplace"] * 3
    assert {"transfer ASR", "transfer ASR lo", "transfer ASR hi"} <= set(table.columns)
    for source in ("checker", "laplace"):
        assert (run / "figures" / f"sweep_{source}.png").stat().st_size > 5000


def test_a_run_without_a_sweep_has_no_sweep_view(tiny_run):
    from bench.report import views

    assert "sweep" not in views(tiny_run)
    assert not list(tiny_run.figures_dir.glob("sweep_*.png"))


# -- figure data from hand-made records ----------------------------------------------------------
def _records(cells: dict, quality: dict | None = None, queries: dict | None = None) -> pd.DataFrame:
    """cells: (source, attack, target) -> (success list, eligible list); quality: (source, attack)
    -> {column: per-sample values}; queries: (source, attack) -> per-sample info_queries."""
    rows = []
    for (source, attack, target), (success, eligible) in cells.items():
        for i, (s, e) in enumerate(zip(success, eligible, strict=True)):
            row = {"source": source, "attack": attack, "target": target, "attack_kind": "pixel", "sample_index": i,
                   "video_id": f"v{i}", "success": bool(s), "eligible": bool(e), "inversion_fake": bool(e)}
            for column, values in (quality or {}).get((source, attack), {}).items():
                row[column] = values[i]
            if queries and (source, attack) in queries:
                row["info_queries"] = queries[(source, attack)][i]
            rows.append(row)
    return pd.DataFrame(rows)


ALL = [1, 1, 1, 1]


def test_sweep_points_equal_hand_computed_means():
    cells, quality = {}, {}
    # transfer success on b and c, per (attack): hand-computed ASR below
    plan = {
        "pgd@eps=0.02": ([1, 1, 1, 0], ALL, [1, 1, 0, 0], [1, 1, 0, 0], [0.4, 0.2, 0.3, 0.1]),
        "pgd@eps=0.01": ([1, 0, 0, 0], ALL, [1, 0, 0, 0], ALL, [0.1, 0.1, 0.2, 0.0]),
        "fgsm": ([0, 0, 0, 0], ALL, [0, 1, 0, 0], [1, 1, 1, 0], [0.5, 0.5, 0.5, 0.5]),
    }
    for attack, (b_success, b_eligible, c_success, c_eligible, lpips) in plan.items():
        cells[("a", attack, "a")] = ([1, 1, 1, 1], ALL)
        cells[("a", attack, "b")] = (b_success, b_eligible)
        cells[("a", attack, "c")] = (c_success, c_eligible)
        quality[("a", attack)] = {"q_lpips": lpips, "q_ssim": [0.9] * 4}
    table = sweep_table(_records(cells, quality), n_boot=200).loc["a"]
    # points of a family ordered by the swept value; the unswept attack is its own point
    assert list(table.index) == ["pgd@eps=0.01", "pgd@eps=0.02", "fgsm"]
    assert list(table["family"]) == ["pgd", "pgd", "fgsm"] and list(table["value"]) == ["0.01", "0.02", ""]
    # mean over targets b, c of success / eligible, in %
    assert table["transfer ASR"].tolist() == pytest.approx([(25 + 25) / 2, (75 + 100) / 2, (0 + 100 / 3) / 2])
    assert table["LPIPS"].tolist() == pytest.approx([0.1, 0.25, 0.5])
    assert (table["transfer ASR lo"] <= table["transfer ASR"]).all()
    assert (table["transfer ASR"] <= table["transfer ASR hi"]).all()
    assert table.loc["fgsm", "LPIPS lo"] == pytest.approx(0.5) == table.loc["fgsm", "LPIPS hi"]


def test_ssim_stands_in_where_lpips_is_not_available():
    cells = {("a", f"pgd@eps={e}", t): ([1, 0], [1, 1]) for e in (0.01, 0.02) for t in "ab"}
    quality = {("a", "pgd@eps=0.01"): {"q_lpips": [np.nan] * 2, "q_ssim": [0.8, 0.9]},
               ("a", "pgd@eps=0.02"): {"q_lpips": [np.nan] * 2, "q_ssim": [0.6, 0.7]}}
    table = sweep_table(_records(cells, quality), n_boot=50)
    assert "LPIPS" not in table and table["SSIM"].tolist() == pytest.approx([0.85, 0.65])


def test_a_run_without_sweep_labels_has_no_sweep_table():
    cells = {("a", "pgd", t): ([1, 0], [1, 1]) for t in "ab"}
    assert sweep_table(_records(cells)) is None


def test_mean_ratio_bootstrap_matches_the_single_ratio_one_and_averages_columns():
    rng = np.random.default_rng(3)
    success = rng.integers(0, 2, size=(40, 1)).astype(float)
    eligible = np.ones_like(success)
    assert bootstrap_mean_ratio_ci(success, eligible, n_boot=300, seed=5) == \
        bootstrap_ratio_ci(success[:, 0], eligible[:, 0], n_boot=300, seed=5)
    numer = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=float)
    denom = np.array([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=float)
    mean, lo, hi = bootstrap_mean_ratio_ci(numer, denom, n_boot=300)
    assert mean == pytest.approx((3 / 4 + 1 / 3) / 2) and lo <= mean <= hi


# -- median queries --------------------------------------------------------------------------------
def test_leaderboard_shows_median_queries_of_successful_white_box_samples():
    cells = {
        ("a", "square", "a"): ([1, 1, 1, 0, 0], [1, 1, 1, 1, 0]),
        ("a", "square", "b"): ([1, 0, 0, 0, 0], [1, 1, 1, 1, 0]),
        ("a", "pgd", "a"): ([1, 1, 1, 1, 0], [1, 1, 1, 1, 0]),
        ("a", "pgd", "b"): ([0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),
    }
    # samples 0-2 succeeded with 10, 30, 20 queries; 3 failed at the budget; 4 was not eligible.
    # Over all samples the median would be 30, over the eligible ones 25.
    records = _records(cells, queries={("a", "square"): [10, 30, 20, 1000, 900]})
    board = leaderboard(asr_long(records, n_boot=20), records)
    assert board.loc["square", "median queries"] == 20
    assert np.isnan(board.loc["pgd", "median queries"])
    without = records[records["attack"] == "pgd"].drop(columns="info_queries")
    assert "median queries" not in leaderboard(asr_long(without, n_boot=20), without)

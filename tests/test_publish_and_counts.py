"""A --limit run says so and leaves the published BENCHMARK.md section alone; eligible counts
per cell, and the mark on cells under 10 eligible samples."""

import pandas as pd
import yaml
from conftest import TINY_MATRIX, run_cli

PUBLISHED = "# BENCHMARK\n\n<!-- bench:tiny-published:start -->\n## tiny-published\n\nthe real numbers\n" \
            "<!-- bench:tiny-published:end -->\n"


def test_a_limit_run_leaves_benchmark_md_unchanged_and_says_it_is_limited(tmp_path):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["report"] = {"benchmark_section": "tiny-published"}
    data["attacks"] = {"fgsm": {"eps": 0.035}}
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(yaml.safe_dump(data))
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "BENCHMARK.md").write_text(PUBLISHED)

    ran = run_cli("run", "--matrix", str(matrix), "--limit", "8", "--out", str(tmp_path / "elsewhere"), cwd=checkout)
    assert ran.returncode == 0, ran.stderr
    assert (checkout / "BENCHMARK.md").read_text() == PUBLISHED
    assert "BENCHMARK.md section 'tiny-published' left unchanged: this is a --limit 8 run" in ran.stderr
    run_dir = next((tmp_path / "elsewhere").glob("tiny/*"))
    note = "Limited run: at most 8 fake samples attacked per cell (limit 8)"
    assert (run_dir / "tables" / "leaderboard_linf_0.035.md").read_text().startswith(note)
    assert note in (run_dir / "tables" / "asr_fgsm.tex").read_text()
    shown = run_cli("show", str(run_dir)).stdout
    assert note in shown and "fewer than 10 eligible samples" in shown
    asr_rows = shown.split("Transfer ASR (%): fgsm")[1].split("quality")[0]
    assert asr_rows.count("†") == 4  # 2 sources x 2 targets, each with at most 8 eligible

    # eligible counts per cell are the records' own, and 8 fakes put every cell under 10
    records = pd.read_parquet(run_dir / "records" / "records.parquet")
    expected = records.groupby(["source", "attack", "target"])["eligible"].sum()
    eligible = pd.read_csv(run_dir / "tables" / "eligible.csv", index_col=[0, 1])
    for (source, attack, target), count in expected.items():
        assert eligible.loc[(source, attack), target] == count
    board = pd.read_csv(run_dir / "tables" / "leaderboard_linf_0.035.csv", index_col=0)
    assert board.loc["fgsm", "min eligible"] == expected.min() and board.loc["fgsm", "few"] == "†"

    # publishing on purpose works, and the section carries the note and the marks
    exported = run_cli("export", str(run_dir), "--to", str(checkout / "BENCHMARK.md"), "--section", "trial")
    assert exported.returncode == 0, exported.stderr
    text = (checkout / "BENCHMARK.md").read_text()
    assert "the real numbers" in text  # the published section is still there
    trial = text.split("<!-- bench:trial:start -->")[1]
    assert f"**{note}" in trial and "| min eligible | few |" in trial
    assert "fewer than 10 eligible samples" in trial
    matrix_rows = trial.split("### Transfer ASR (%): fgsm")[1].split("###")[0]
    assert matrix_rows.count("†") == len(expected)  # every cell of the ASR matrix is marked


def test_a_run_without_limit_flag_updates_its_section(tmp_path):
    from bench.config import load_matrix
    from bench.publish import is_partial

    cfg = load_matrix(str(TINY_MATRIX))
    assert not is_partial(cfg, None)
    cfg.limit = 32  # a matrix's own limit (demo.yaml) is its published setup
    assert not is_partial(cfg, 32) and is_partial(cfg, 8)

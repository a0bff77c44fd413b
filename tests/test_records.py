"""Records plus manifest as the only interface between compute and render (issue 13): run
identity, render-only reruns, resume safety, option validation, duplicate names, per-threat-model
leaderboards, the record schema. Through the `bench` command where a user meets it."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_MATRIX, run_cli

from bench.store import RunStore

NOTE = "First note."


def _write_matrix(path: Path, reverse: bool = False, **changes) -> Path:
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["report"] = {"benchmark_section": "tiny", "note": NOTE}
    data["attacks"]["pgd"]["eps"] = 0.02  # a second L∞ budget: its own leaderboard
    data["limit"] = 8
    data.update(changes)
    if reverse:  # the components in another order: no number changes
        data["attacks"] = dict(reversed(list(data["attacks"].items())))
        data["detectors"] = dict(reversed(list(data["detectors"].items())))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _shard_times(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (root / "shards").rglob("*.*")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (8 fakes) made by `bench run`, with its BENCHMARK.md section."""
    tmp = tmp_path_factory.mktemp("records")
    matrix = _write_matrix(tmp / "tiny.yaml")
    proc = run_cli("run", "--matrix", str(matrix), "--out", str(tmp / "results"), "--quiet",
                   "--benchmark-md", str(tmp / "BENCHMARK.md"))
    assert proc.returncode == 0, proc.stderr
    return RunStore.open(proc.stdout.strip().splitlines()[-1]), tmp


def _copy(finished, tmp_path) -> tuple[RunStore, Path]:
    """A private copy of the finished run (same run id) under tmp_path/results."""
    store, _ = finished
    root = tmp_path / "results" / "tiny" / store.run_id
    shutil.copytree(store.root, root)
    return RunStore(root), tmp_path / "results"


def test_note_and_bootstrap_edit_rerenders_without_recomputing(finished, tmp_path):
    store, tmp = finished
    copy, out = _copy(finished, tmp_path)
    shards, records = _shard_times(copy.root), copy.records_path.stat().st_mtime_ns
    matrix = _write_matrix(tmp_path / "tiny.yaml", reverse=True,
                           report={"benchmark_section": "tiny", "note": "A new note."},
                           metrics={"mode": "paper", "bootstrap": 50, "quality": ["tv", "esnle", "lpips", "ssim", "psnr"]})
    bench_md = tmp_path / "BENCHMARK.md"
    proc = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--quiet", "--benchmark-md", str(bench_md))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(copy.root)  # the same run id
    assert _shard_times(copy.root) == shards  # 0 shards computed
    assert copy.records_path.stat().st_mtime_ns == records  # nor merged again
    text = bench_md.read_text()
    assert "A new note." in text and NOTE not in text
    assert copy.manifest["config"]["metrics"]["bootstrap"] == 50  # the render setting now in force
    assert "A new note." not in (tmp / "BENCHMARK.md").read_text()


def test_render_rebuilds_tables_from_the_folder_alone(finished, tmp_path):
    copy, _ = _copy(finished, tmp_path)
    shutil.rmtree(copy.tables_dir)
    proc = run_cli("render", str(copy.root), "--quiet", "--benchmark-md", str(tmp_path / "B.md"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store, _ = finished
    for table in sorted(store.tables_dir.iterdir()):
        assert (copy.tables_dir / table.name).read_bytes() == table.read_bytes(), table.name
    assert NOTE in (tmp_path / "B.md").read_text()


def test_leaderboards_are_split_by_threat_model_with_the_budget_in_the_title(finished):
    store, tmp = finished
    boards = sorted(p.name for p in store.tables_dir.glob("leaderboard*.csv"))
    assert boards == ["leaderboard_linf_0.02.csv", "leaderboard_linf_0.035.csv"]
    assert pd.read_csv(store.tables_dir / "leaderboard_linf_0.02.csv")["attack"].tolist() == ["pgd"]
    assert sorted(pd.read_csv(store.tables_dir / "leaderboard_linf_0.035.csv")["attack"]) == ["fgsm", "mifgsm"]
    section = (tmp / "BENCHMARK.md").read_text()
    assert "### Leaderboard, L∞ ε = 0.035 (8.93/255)" in section and "### Leaderboard, L∞ ε = 0.02 (5.1/255)" in section
    assert "\\caption{Leaderboard, L∞ ε = 0.02" in (store.tables_dir / "leaderboard_linf_0.02.tex").read_text()
    exported = run_cli("export", str(store.root), "--format", "csv")
    assert "# Leaderboard, L∞ ε = 0.02 (5.1/255) (leaderboard_linf_0.02)" in exported.stdout


def test_leaderboards_never_rank_across_families():
    from bench.report import leaderboards

    long = pd.DataFrame({"attack": ["pgd", "stat", "eraser"], "source": "a", "target": "a", "asr": [10.0, 90.0, 50.0],
                         "n": 4, "n_eligible": 4})
    records = pd.DataFrame({"attack": ["pgd", "stat", "eraser"], "attack_kind": ["pixel", "pixel", "latent"]})
    traits = {"pgd": {"threat_model": "linf", "budget": {"norm": "linf", "eps": 4 / 255}},
              "stat": {"threat_model": "statistical", "budget": {"norm": "linf", "eps": 60 / 255}},
              "eraser": {"threat_model": "latent", "budget": {"step": 0.01}}}
    boards = leaderboards(long, records, traits)
    assert {stem: list(board.index) for stem, (_, board) in boards.items()} == {
        "leaderboard_linf_0.01569": ["pgd"], "leaderboard_statistical": ["stat"], "leaderboard_latent": ["eraser"]}
    assert boards["leaderboard_linf_0.01569"][0] == "Leaderboard, L∞ ε = 0.01569 (4/255)"


def test_version_bump_refuses_the_resume_until_allowed(finished, tmp_path, monkeypatch, capsys):
    from bench.cli import main
    from bench.registry import ATTACKS

    copy, out = _copy(finished, tmp_path)
    matrix = _write_matrix(tmp_path / "tiny.yaml")
    monkeypatch.setattr(ATTACKS.get("pgd"), "version", "2")
    args = ["run", "--matrix", str(matrix), "--out", str(out), "--quiet", "--benchmark-md", str(tmp_path / "B.md")]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == (f"error: cannot resume run {copy.run_id}: attacks.pgd version is 2 now, the run was computed "
                   "with 1; pass --allow-version-change to keep the stored shards, or start over with --fresh "
                   "(or another --out)")
    main([*args, "--allow-version-change"])
    changes = copy.manifest["version_changes"]
    assert [(c["what"], c["stored"], c["current"]) for c in changes] == [("attacks.pgd version", "1", "2")]
    assert copy.manifest["fingerprints"]["entries"]["attacks.pgd"] == "pgd@2"


def test_damaged_and_foreign_shards_are_recomputed_with_one_warning_each(finished, tmp_path):
    store, _ = finished
    copy, out = _copy(finished, tmp_path)
    copy.records_path.unlink()  # as after a kill: the merge has not happened
    adv = copy.shard_path(("adv", "checker", "pgd"), 0, "safetensors")
    adv.write_bytes(adv.read_bytes()[:100])  # truncated
    clean = copy.shard_path(("clean", "laplace"), 1, "parquet")
    clean.write_bytes(b"")  # zero bytes
    foreign = copy.shard_path(("score", "laplace", "fgsm", "checker"), 0, "parquet")
    shutil.copy(copy.shard_path(("score", "laplace", "fgsm", "checker"), 1, "parquet"), foreign)  # other samples
    untouched = {p: t for p, t in _shard_times(copy.root).items() if p not in (adv, clean, foreign)}
    matrix = _write_matrix(tmp_path / "tiny.yaml")
    proc = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--quiet", "--benchmark-md", str(tmp_path / "B.md"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: shard")]
    assert len(warnings) == 3, proc.stderr
    assert "unreadable" in warnings[0] or "unreadable" in warnings[1]
    assert any("holds samples [9, 11, 13, 15], expected [1, 3, 5, 7]" in w for w in warnings), warnings
    assert {p: t for p, t in _shard_times(copy.root).items() if p in untouched} == untouched
    pd.testing.assert_frame_equal(copy.records(), store.records())


def test_unreadable_manifest_stops_before_any_work(finished, tmp_path):
    copy, out = _copy(finished, tmp_path)
    (copy.root / "manifest.json").write_text('{"run_id": "trunc')
    copy.records_path.unlink()
    shards = _shard_times(copy.root)
    proc = run_cli("run", "--matrix", str(_write_matrix(tmp_path / "tiny.yaml")), "--out", str(out), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{copy.root / 'manifest.json'} is unreadable (not valid JSON)" in proc.stderr
    assert _shard_times(copy.root) == shards and not copy.records_path.exists()


def test_records_are_checked_against_the_schema_on_read(finished, tmp_path):
    copy, _ = _copy(finished, tmp_path)
    frame = pd.read_parquet(copy.records_path).drop(columns=["success"])
    frame.to_parquet(copy.records_path, index=False)  # a foreign records file: no checksum either
    proc = run_cli("render", str(copy.root), "--quiet")
    assert proc.returncode == 2 and "records.parquet is damaged" in proc.stderr
    from bench.errors import UserError
    from bench.types import validate_records

    with pytest.raises(UserError, match="records lack the column 'success' \\(flag\\)"):
        validate_records(frame, "x")
    with pytest.raises(UserError, match="record column 'eligible' must be flag"):
        validate_records(frame.assign(success=True, eligible=1.5), "x")


@pytest.mark.parametrize("attack, expected", [
    ({"eps": 0.035, "stpes": 5}, "attacks.pgd: unknown option 'stpes' for attack 'pgd'. Did you mean 'steps' or 'step'?"),
    ({"eps": 0.035, "steps": "5"}, "attacks.pgd.steps must be a whole number >= 1, got '5'"),
    ({"preset": "paper-celebdf", "random_strat": False}, "unknown option 'random_strat' for attack 'pgd'. Did you mean 'random_start'?"),
])
def test_a_misspelt_or_mistyped_option_is_one_line_exit_2_and_no_folder(attack, expected, tmp_path):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["attacks"]["pgd"] = attack
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "results"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_detector_option_typo_is_caught_through_its_class(tmp_path):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["detectors"]["checker"]["input_szie"] = 32
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "results"), "--quiet")
    assert proc.returncode == 2 and "Did you mean 'input_size'?" in proc.stderr, proc.stderr


def test_a_duplicate_plugin_name_is_an_error_naming_both_origins(tmp_path):
    (tmp_path / "dup_attack.py").write_text("def pgd(**kwargs):\n    raise RuntimeError('never built')\n")
    dist = tmp_path / "dup_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dup-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[artifact_bench.attacks]\npgd = dup_attack:pgd\n")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[1]}"}
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "attack name 'pgd' is registered twice: by builtin:attacks.pixel and by plugin:dup-plugin" in listed.stdout
    proc = run_cli("run", "--matrix", str(TINY_MATRIX), "--out", str(tmp_path / "r"), "--quiet", env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "registered twice: by builtin:attacks.pixel and by plugin:dup-plugin" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_duplicate_builtin_registration_is_an_error_naming_both():
    from bench.registry import Registry, UnknownNameError

    reg = Registry("things", ())

    @reg.register("same")
    def first():
        return 1

    def second():
        return 2

    second.__module__ = "elsewhere"
    reg.register("same")(second)
    reg.register("same")(first)  # a third claim is listed too
    with pytest.raises(UnknownNameError, match="registered twice: by builtin:test_records and by builtin:elsewhere"):
        reg.get("same")


def _folder_matrix(tmp_path: Path) -> Path:
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from detectors.tiny import TinyCNN

    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (tmp_path / "faces" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "faces" / label / f"{i}.png")
    torch.manual_seed(0)
    save_file(TinyCNN(width=4, input_size=32).state_dict(), str(tmp_path / "tiny.safetensors"))
    matrix = {"name": "folder-check", "seed": 0, "batch_size": 4, "shard_size": 2, "device": "cpu",
              "dataset": {"name": "folder", "root": str(tmp_path / "faces"), "size": 32},
              "detectors": {"cnn": {"detector": "tiny_cnn", "width": 4, "input_size": 32,
                                    "checkpoint": str(tmp_path / "tiny.safetensors")}},
              "attacks": {"fgsm": {"eps": 0.03}}, "metrics": {"mode": "clean", "bootstrap": 20}}
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return path


def test_a_changed_dataset_or_checkpoint_stops_the_resume(tmp_path):
    from safetensors.torch import load_file, save_file

    matrix = _folder_matrix(tmp_path)
    args = ["run", "--matrix", str(matrix), "--out", str(tmp_path / "r"), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    store = RunStore.open(first.stdout.strip().splitlines()[-1])
    store.records_path.unlink()  # unfinished, as after a kill
    shutil.copy(tmp_path / "faces" / "fake" / "0.png", tmp_path / "faces" / "fake" / "9.png")  # an image added
    added = run_cli(*args)
    assert added.returncode == 2 and added.stderr.count("\n") == 1, added.stderr
    assert "dataset sample list fingerprint is" in added.stderr and "restore the dataset" in added.stderr
    (tmp_path / "faces" / "fake" / "9.png").unlink()
    weights = load_file(str(tmp_path / "tiny.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()},
              str(tmp_path / "tiny.safetensors"))  # retrained between the kill and the resume
    retrained = run_cli(*args)
    assert retrained.returncode == 2 and retrained.stderr.count("\n") == 1, retrained.stderr
    assert f"checkpoint {tmp_path / 'tiny.safetensors'} (detectors.cnn.checkpoint) sha256 is" in retrained.stderr
    assert not store.records_path.exists()
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert manifest["checkpoints"]["detectors.cnn.checkpoint"]["sha256"] != ""


def test_a_frame_shard_verifies_after_parquet_round_trip(tmp_path):
    import numpy as np

    from bench.shards import DamagedShard, read_frame_file, write_frame_file

    frame = pd.DataFrame({"sample_index": [1, 3], "x": [0.123456789, np.nan], "mix": [np.nan, np.arange(3.0)],
                          "who": ["a", None], "ok": [True, False]})
    path = tmp_path / "s.parquet"
    write_frame_file(path, frame, [1, 3], {"package": "0"})
    assert read_frame_file(path, [1, 3])["who"].iloc[0] == "a"
    with pytest.raises(DamagedShard, match="holds samples \\[1, 3\\], expected \\[1, 2\\]"):
        read_frame_file(path, [1, 2])
    data = path.read_bytes()
    value = np.float64(0.123456789).tobytes()
    assert value in data
    path.write_bytes(data.replace(value, np.float64(0.123456788).tobytes()))  # bit rot in a value
    with pytest.raises(DamagedShard, match="checksum mismatch"):
        read_frame_file(path, [1, 3])


def stand_in_hook(quiet: bool = False) -> str:
    """Instead of building the demo world: where its models would be."""
    return "/models/here"


def test_load_is_pure_and_prepare_hooks_hand_values_to_the_parser(monkeypatch):
    import os

    from bench import prepare
    from bench.config import load_matrix

    monkeypatch.delenv("ARTIFACT_BENCH_DEMO_MODELS", raising=False)
    loaded = load_matrix("demo", prepare=False)  # load: parsed and validated, no hook run
    assert loaded.detectors[0].kwargs["checkpoint"] == "${ARTIFACT_BENCH_DEMO_MODELS}/efficientnet_b4.safetensors"
    monkeypatch.setitem(prepare.HOOKS, "demo_world", prepare.Hook("test_records:stand_in_hook",
                                                                  "ARTIFACT_BENCH_DEMO_MODELS"))
    prepared = load_matrix("demo")
    assert prepared.detectors[0].kwargs["checkpoint"] == "/models/here/efficientnet_b4.safetensors"
    assert "ARTIFACT_BENCH_DEMO_MODELS" not in os.environ  # nothing passed through the environment

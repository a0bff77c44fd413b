import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import ROOT, TINY_MATRIX

from bench.config import load_matrix
from bench.runner import Built, MatrixRun, build, open_run, run_matrix
from bench.store import RunStore


def test_run_writes_records_tables_and_heatmaps(tiny_run):
    records = tiny_run.records()
    # 2 sources x 3 attacks x 2 targets x 16 fakes
    assert len(records) == 2 * 3 * 2 * 16
    assert set(records["attack"]) == {"fgsm", "pgd", "mifgsm"}
    assert (records["label"] == 1).all()
    for stem in ("leaderboard_linf_0.035", "asr_fgsm", "asr_pgd", "asr_mifgsm", "asr_all"):
        for ext in ("csv", "tex", "md"):
            assert (tiny_run.tables_dir / f"{stem}.{ext}").stat().st_size > 0
    for attack in ("fgsm", "pgd", "mifgsm"):
        png = tiny_run.figures_dir / f"asr_{attack}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tex = (tiny_run.tables_dir / "leaderboard_linf_0.035.tex").read_text()  # its ASR columns differ by attack
    assert "\\toprule" in tex and "\\textbf{" in tex
    manifest = tiny_run.manifest
    assert manifest["seed"] == 7 and manifest["versions"]["torch"] != "absent"


def test_records_follow_the_asr_rule(tiny_run):
    r = tiny_run.records()
    expected = (r.p_fake_clean > 0.5) & (r.p_fake_inversion > 0.5) & (r.p_fake_adv < 0.5)
    assert (r["success"] == expected).all()
    # pixel attacks: the inversion is the original
    assert (r["p_fake_inversion"] == r["p_fake_clean"]).all()
    # the hand-built detectors see every synthetic fake as fake
    assert r["eligible"].all()
    # a one-step FGSM of 0.035 removes the checkerboard artifact for both detectors
    assert r[r.attack == "fgsm"]["success"].all()
    # adversarial images stay inside the L-inf budget (8-bit truncation can only shrink them)
    pgd = r[r.attack == "pgd"]
    assert (pgd["info_linf"] <= 0.035 + 1e-6).all()


def test_same_seed_twice_gives_identical_records(tiny_run, tmp_path):
    again = run_matrix(load_matrix(str(TINY_MATRIX)), out_root=tmp_path, quiet=True)
    pd.testing.assert_frame_equal(tiny_run.records(), again.records())
    for name in ("leaderboard_linf_0.035.csv", "asr_all.csv", "asr_pgd.tex"):
        assert (tiny_run.tables_dir / name).read_bytes() == (again.tables_dir / name).read_bytes()


def test_finished_shards_are_not_recomputed(tmp_path):
    cfg = load_matrix(str(TINY_MATRIX))
    built: Built = build(cfg, limit=8, device="cpu")
    first = MatrixRun(cfg, built, open_run(cfg, built, tmp_path, 8), quiet=True)
    first.execute()
    assert len(first.computed) > 0
    shard_files = sorted((first.store.root / "shards").rglob("*.*"))
    mtimes = {p: p.stat().st_mtime_ns for p in shard_files}
    second = MatrixRun(cfg, built, open_run(cfg, built, tmp_path, 8), quiet=True)
    second.execute()
    assert second.computed == []
    assert {p: p.stat().st_mtime_ns for p in shard_files} == mtimes


def test_sigkill_mid_run_then_resume_gives_identical_tables(tiny_run, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--matrix", str(TINY_MATRIX), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    adv_dir = out / "tiny" / tiny_run.run_id / "shards" / "adv"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(adv_dir.rglob("*.safetensors"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_store = RunStore(out / "tiny" / tiny_run.run_id)
    assert not killed_store.records_path.exists(), "the run finished before it could be killed"
    survivors = {p: p.stat().st_mtime_ns for p in (killed_store.root / "shards").rglob("*.*")}
    assert survivors, "nothing was written before the kill"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for path, mtime in survivors.items():
        if not path.name.startswith("."):  # a temp file of the killed process may remain; it is ignored
            assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"
    for table in sorted(tiny_run.tables_dir.iterdir()):
        assert (killed_store.tables_dir / table.name).read_bytes() == table.read_bytes(), table.name


def test_quality_columns_are_measured_on_the_stored_images(tiny_run):
    import numpy as np
    import torch

    from bench.metrics.quality import tv_paper
    from bench.registry import create_dataset
    from bench.runner import dequantize

    r = tiny_run.records()
    row = r[(r.source == "checker") & (r.attack == "pgd") & (r.target == "checker")].iloc[0]
    image = create_dataset("synthetic", n=32, size=32)[int(row.sample_index)].image01
    assert row.q_tv_orig == np.float64(tv_paper(image[None]).item())
    shard = tiny_run.read_tensors(("adv", "checker", "pgd"), 0)
    pos = shard["index"].tolist().index(int(row.sample_index))
    assert row.q_tv_adv == tv_paper(dequantize(shard["adv"][pos:pos + 1])).item()
    assert torch.equal(shard["adv"].float(), torch.floor(shard["adv"].float()))  # stored as 8-bit
    assert r["q_lpips"].isna().all()  # no AlexNet trunk in the test cache: n/a, never a number
    quality = (tiny_run.tables_dir / "quality.md").read_text()
    assert "n/a" in quality and "TV adv" in quality


def test_bench_explain_writes_grids_for_a_finished_run(tiny_run):
    from conftest import run_cli
    from PIL import Image

    proc = run_cli("explain", str(tiny_run.root), "--attack", "pgd", "--n", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    paths = [p for p in proc.stdout.split() if p.endswith(".png")]
    assert sorted(Path(p).name for p in paths) == ["checker__pgd.png", "laplace__pgd.png"]
    width, height = Image.open(paths[0]).size
    assert height > width / 7 * 2.5  # three sample rows of seven panels
    bad = run_cli("explain", str(tiny_run.root), "--attack", "nope")
    assert bad.returncode == 2 and "is not in this run" in bad.stderr


def test_views_are_remembered_until_the_records_change(tiny_run, monkeypatch):
    from bench import report

    first = report.views(tiny_run)
    calls = []
    real = report.asr_long
    monkeypatch.setattr(report, "asr_long", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = report.views(tiny_run)
    assert calls == [] and list(again) == list(first)
    assert all(again[k].equals(first[k]) for k in first)
    tiny_run.write_records(tiny_run.records())  # same content, new file: derived again
    report.views(tiny_run)
    assert calls == [1]

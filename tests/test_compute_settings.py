"""Compute settings (bench/compute_settings.py): the thread count, device type and deterministic
flag a run's floats depend on are applied in every process and rank, recorded in the manifest
and each shard, and a resume under other ones is refused."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, TINY_MATRIX, run_cli

from bench.compute_settings import DEFAULT_THREADS, STAMP_KEY, ComputeSettings, adopt, read_stamp, remove_other_shards
from bench.config import load_matrix, parse_matrix, read_yaml
from bench.errors import UserError
from bench.models.checkpoints import save_e4e
from bench.models.e4e import Encoder4Editing
from bench.models.latent import LatentStack
from bench.models.stylegan2 import Generator
from bench.runner import run_matrix
from bench.store import RunStore

# real conv detectors (seeded tiny CNNs) and the sign-step / random attacks whose results depend
# on float noise: the eraser (e4e encoder + StyleGAN2, random noise), EFAA and StatAttack.
# 8 fakes in shards of 4: 2 targets x 2 clean jobs + 2 sources x 3 attacks x 2 units
CONV_MATRIX = """
name: conv
seed: 3
batch_size: 4
shard_size: 4
device: cpu
limit: 8
dataset: {{name: synthetic, n: 16, size: 64}}
detectors:
  narrow: {{detector: tiny_cnn, width: 8, input_size: 64, seed: 1}}
  wide: {{detector: tiny_cnn, width: 16, input_size: 64, seed: 2}}
attacks:
  eraser: {{step: 0.02, steps: 4, levels: full, noise: random, checkpoint: "{e4e}"}}
  efaa: {{eps: 0.0157, steps: 3}}
  statattack: {{}}
metrics: {{mode: clean, quality: [tv, esnle, psnr], bootstrap: 50}}
"""
# OMP_WAIT_POLICY: idle OpenMP threads sleep instead of spinning, so that a 2-thread run on a
# busy 2-core machine is not ten times slower; it changes no result
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture(scope="module")
def conv_matrix(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conv")
    torch.manual_seed(0)
    generator = Generator(64, style_dim=64, n_mlp=2, channel_max=32).eval()
    with torch.no_grad():  # as tests/test_eraser.py: noise that matters, images mostly in range
        for name, p in generator.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
            if "to_rgb" in name and name.endswith("conv.weight"):
                p.mul_(0.3)
    encoder = Encoder4Editing(n_styles=generator.n_latent, input_size=64, style_dim=64, units=(1, 1, 1, 1),
                              widths=(16, 16, 32, 32)).eval()
    stack = LatentStack(encoder, generator, generator.mean_latent(500, torch.Generator().manual_seed(1)))
    e4e = save_e4e(folder / "e4e.pt", stack.encoder, stack.generator, stack.latent_avg)
    path = folder / "conv.yaml"
    path.write_text(CONV_MATRIX.format(e4e=e4e))
    return path


@pytest.fixture(scope="module")
def conv_run(conv_matrix, tmp_path_factory) -> RunStore:
    """The conv matrix in this process at the default thread count."""
    return run_matrix(load_matrix(str(conv_matrix)), out_root=tmp_path_factory.mktemp("one"), quiet=True)


def _tables(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "tables").iterdir())}


def _shards(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "shards").rglob("*.*") if not p.name.startswith("."))


def test_default_is_one_thread_recorded_in_the_manifest_and_every_shard(tiny_run):
    expected = {"threads": DEFAULT_THREADS, "device": "cpu", "deterministic": False}
    assert DEFAULT_THREADS == 1
    manifest = tiny_run.manifest
    assert {k: manifest["compute"][k] for k in expected} == expected
    assert manifest["compute"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    shards = _shards(tiny_run.root)
    assert len(shards) == 8 + 8 + 24 + 24 + 48  # clean, reals, adv, quality, 2 targets x score
    assert {p.suffix for p in shards} == {".parquet", ".safetensors"}
    assert all(read_stamp(p) == expected for p in shards)
    # the stamp does not disturb the frames' contents
    assert list(tiny_run.read_frame(("clean", "checker"), 0).columns) == [
        "sample_index", "sample_id", "video_id", "label", "p_fake"]


@pytest.mark.slow  # one torchrun launch (3 interpreters) on the conv matrix: ~40 s on 2 busy cores
def test_torchrun_two_ranks_write_the_tables_of_one_process(conv_run, conv_matrix, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bench.cli", "run", "--matrix", str(conv_matrix), "--out", str(tmp_path), "--quiet"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "conv" / conv_run.run_id
    assert [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text())["jobs"] != [] for r in (0, 1)] == [True] * 2
    pd.testing.assert_frame_equal(RunStore(run_dir).records(), conv_run.records())
    assert _tables(run_dir) == _tables(conv_run.root)
    assert RunStore(run_dir).manifest["compute"]["threads"] == 1


@pytest.mark.slow  # a 2-thread run of the conv matrix in a fresh interpreter: ~30 s on 2 busy cores
def test_another_thread_count_gives_other_tables(conv_run, conv_matrix, tmp_path):
    """What went wrong before: a plain run took every core (2 threads here), each torchrun rank
    one; quality metrics and the eraser's encoder sum in another order at another thread count."""
    done = run_cli("run", "--matrix", str(conv_matrix), "--out", str(tmp_path), "--quiet", "--threads", "2",
                   env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "conv" / conv_run.run_id  # the same run id: threads are checked, not hashed
    assert RunStore(run_dir).manifest["compute"]["threads"] == 2
    two, one = RunStore(run_dir).records(), conv_run.records()
    # ESNLE's sums (on every image) land on other last bits, and so do the e4e encoder's, which
    # the eraser's sign steps can turn into other pixels
    assert (two["q_esnle_orig"] != one["q_esnle_orig"]).any()
    assert _tables(run_dir).keys() == _tables(conv_run.root).keys()
    assert _tables(run_dir) != _tables(conv_run.root)


def test_resume_under_another_thread_count_is_refused_then_recomputed_on_request(tmp_path):
    matrix = tmp_path / "small.yaml"  # the tiny matrix cut to one shard and one attack
    text = TINY_MATRIX.read_text().replace("name: tiny", "name: small\nlimit: 4")
    matrix.write_text(text.replace("  pgd: {eps: 0.035, step: 0.01, steps: 6}\n", "")
                      .replace("  mifgsm: {eps: 0.035, step: 0.01, steps: 6}\n", ""))
    first = run_matrix(load_matrix(str(matrix)), out_root=tmp_path, quiet=True)
    before, records = {p: p.stat().st_mtime_ns for p in _shards(first.root)}, first.records()
    assert len(before) == 2 + 2 + 2 * (1 + 1 + 2)  # clean, reals, 2 sources x (adv, quality, 2 scores)
    refused = run_cli("run", "--matrix", str(matrix), "--out", str(tmp_path), "--quiet", "--threads", "2", env=ENV)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: "), refused.stderr
    assert "threads 1 -> 2" in refused.stderr and "--threads 1" in refused.stderr
    assert "--allow-compute-change" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in _shards(first.root)} == before  # nothing touched

    done = run_cli("run", "--matrix", str(matrix), "--out", str(tmp_path), "--quiet", "--threads", "2",
                   "--allow-compute-change", env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _shards(first.root)
    assert set(after) == set(before)
    assert all(p.stat().st_mtime_ns != before[p] for p in after)  # every shard recomputed
    assert all(read_stamp(p) == {"threads": 2, "device": "cpu", "deterministic": False} for p in after)
    assert first.manifest["compute"]["threads"] == 2
    # the same numbers up to float noise (the quality metrics' sums differ in their last bits)
    pd.testing.assert_frame_equal(first.records(), records, check_exact=False, rtol=1e-4, atol=1e-5)


def test_another_device_type_is_refused_and_ranks_must_agree_with_rank_0(tiny_run, tmp_path):
    run_dir = tmp_path / "tiny" / tiny_run.run_id
    shutil.copytree(tiny_run.root, run_dir)
    store = RunStore(run_dir)
    cpu = ComputeSettings(threads=1, device="cpu", deterministic=False)
    adopt(store, cpu)  # the same settings: resumes
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["compute"]["device"] = "cuda"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"device cuda -> cpu\).*resume with --device cuda"):
        adopt(store, cpu)
    with pytest.raises(UserError, match="rank 0's settings"):
        adopt(store, cpu, allow_change=True, is_main=False)  # only rank 0 changes the folder


def test_removing_an_adversarial_shard_removes_what_was_computed_from_it(tmp_path):
    store = RunStore(tmp_path)
    old = ComputeSettings(threads=2, device="cpu", deterministic=False)
    new = ComputeSettings(threads=1, device="cpu", deterministic=False)
    frame = pd.DataFrame({"sample_index": [0, 1]})
    samples, writer = [0, 1], {"package": "0"}
    store.shard_stamp = {STAMP_KEY: old.stamp()}
    store.write_tensors(("adv", "s", "a"), 0, {"adv": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)}, samples, writer)
    store.shard_stamp = {STAMP_KEY: new.stamp()}
    for key in (("quality", "s", "a"), ("score", "s", "a", "t"), ("clean", "t")):
        store.write_frame(key, 0, frame, samples, writer)
    store.write_tensors(("adv", "s", "a"), 1, {"adv": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)}, samples, writer)
    store.write_frame(("score", "s", "a", "t"), 1, frame, samples, writer)
    assert remove_other_shards(store, new) == 3
    assert [p.relative_to(tmp_path / "shards").as_posix() for p in _shards(tmp_path)] == [
        "adv/s/a/00001.safetensors", "clean/t/00000.parquet", "score/s/a/t/00001.parquet"]
    pd.testing.assert_frame_equal(store.read_frame(("clean", "t"), 0), frame)


def test_matrix_keys_and_the_cli_flag_resolve_and_apply(tmp_path):
    data = read_yaml(TINY_MATRIX)
    cfg = parse_matrix({**data, "threads": 3, "deterministic": True}, TINY_MATRIX)
    assert (cfg.threads, cfg.deterministic) == (3, True)
    # checked on resume, not hashed: the run id stays that of the plain matrix
    assert cfg.resolved() == parse_matrix(data, TINY_MATRIX).resolved()
    for key, bad in (("threads", 0), ("threads", "4"), ("threads", True), ("deterministic", "yes")):
        with pytest.raises(UserError, match=f"key '{key}'"):
            parse_matrix({**data, key: bad}, TINY_MATRIX)
    assert ComputeSettings.resolve(3, None, torch.device("cpu"), False).threads == 3
    assert ComputeSettings.resolve(3, 2, torch.device("cpu"), False).threads == 2  # --threads wins
    assert ComputeSettings.resolve(None, None, torch.device("cuda", 1), False).device == "cuda"
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        ComputeSettings(threads=2, device="cpu", deterministic=True).apply()
        assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        ComputeSettings(threads=threads, device="cpu", deterministic=deterministic).apply()

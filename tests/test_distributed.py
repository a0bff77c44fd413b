import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, TINY_MATRIX

from bench.config import load_matrix
from bench.distributed import Ranks, compute_device, launch_info, share
from bench.errors import UserError
from bench.runner import MatrixRun, build, open_run
from bench.store import RunStore

# the tiny matrix: 16 fakes and 16 reals in shards of 4 -> 2 targets x (4 clean + 4 real) jobs
# + 2 sources x 3 attacks x 4 units
TINY_JOBS = 2 * (4 + 4) + 2 * 3 * 4


def test_share_is_a_disjoint_balanced_cover():
    assert share(list(range(7)), 1, 3) == [1, 4]
    assert share(["a", "b"], 2, 3) == []
    for world in range(1, 6):
        for n in range(12):
            parts = [share(list(range(n)), r, world) for r in range(world)]
            assert sorted(x for p in parts for x in p) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_launch_info_reads_torchrun_then_slurm():
    assert launch_info({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    assert launch_info({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}) == (5, 6, 2)
    assert launch_info({"SLURM_PROCID": "5"}) is None


def test_compute_device_follows_the_matrix_and_local_rank():
    assert compute_device("cpu", 3) == torch.device("cpu")
    if torch.cuda.is_available():
        assert compute_device("auto", 0) == torch.device("cuda:0")
    else:
        assert compute_device("auto", 1) == torch.device("cpu")
        with pytest.raises(UserError, match="CUDA is not available"):
            compute_device("cuda", 0)
    with pytest.raises(UserError, match="cannot be split"):
        compute_device("mps", 0)


def test_three_way_split_computes_each_shard_once_and_merges_identically(tiny_run, tmp_path):
    """The ranks' work without a process group: each 'rank' runs its share of the same pending list."""
    cfg = load_matrix(str(TINY_MATRIX))
    built = build(cfg, None, "cpu")
    store = open_run(cfg, built, tmp_path, None)
    pending = [name for name, _ in MatrixRun(cfg, built, store).plan(pending_only=True)]
    assert len(pending) == TINY_JOBS
    computed = []
    for rank in range(3):
        run = MatrixRun(cfg, built, store, quiet=True)
        mine = set(share(pending, rank, 3))
        run.work([(name, job) for name, job in run.plan() if name in mine])
        computed.append(set(run.computed))
        assert len(run.plan(pending_only=True)) == TINY_JOBS - sum(len(share(pending, r, 3)) for r in range(rank + 1))
    assert not (computed[0] & computed[1]) and not (computed[0] & computed[2]) and not (computed[1] & computed[2])
    # every shard file: 8 clean + 8 reals + 24 adv + 24 quality + 24 x 2 targets score
    assert sum(map(len, computed)) == 8 + 8 + 24 + 24 + 48
    merged = MatrixRun(cfg, built, store).merge()
    pd.testing.assert_frame_equal(merged, tiny_run.records())


def _torchrun(out: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "bench.cli", "run", "--matrix", str(TINY_MATRIX), "--out", str(out), "--quiet"]


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _same_tables(run_dir: Path, reference: RunStore) -> None:
    tables = sorted(reference.tables_dir.iterdir())
    assert tables
    for table in tables:
        assert (run_dir / "tables" / table.name).read_bytes() == table.read_bytes(), table.name


@pytest.mark.slow  # two torchrun launches start ~3 interpreters each: ~45 s on 2 busy cores
def test_torchrun_two_ranks_give_the_single_process_tables(tiny_run, tmp_path):
    done = subprocess.run(_torchrun(tmp_path, 2), env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "tiny" / tiny_run.run_id
    pd.testing.assert_frame_equal(RunStore(run_dir).records(), tiny_run.records())
    _same_tables(run_dir, tiny_run)
    # both ranks worked, on disjoint halves of the 32 jobs
    logs = [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [log["world_size"] for log in logs] == [2, 2]
    assert [len(log["jobs"]) for log in logs] == [TINY_JOBS // 2] * 2
    assert not set(logs[0]["jobs"]) & set(logs[1]["jobs"])
    assert all(log["device"] == "cpu" for log in logs)
    assert done.stdout.strip().splitlines() == [str(run_dir)]  # only rank 0 reports the folder


def _worker_with_rank(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker process whose RANK is ``rank`` (its children, from /proc)."""
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(pid)
    return None


@pytest.mark.slow
def test_killed_rank_then_rerun_at_another_world_size_completes_identically(tiny_run, tmp_path):
    launcher = subprocess.Popen(_torchrun(tmp_path, 2), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "tiny" / tiny_run.run_id
    deadline = time.time() + 180
    while time.time() < deadline and len(list((run_dir / "shards" / "adv").rglob("*.safetensors"))) < 4:
        time.sleep(0.02)
    victim = _worker_with_rank(launcher.pid, 1)
    assert victim is not None, "rank 1 was not found among torchrun's workers"
    os.kill(victim, signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0  # torchrun tears the job down
    assert not (run_dir / "records" / "records.parquet").exists(), "the run finished before the kill"
    survivors = {p: p.stat().st_mtime_ns for p in (run_dir / "shards").rglob("*.*") if not p.name.startswith(".")}
    assert survivors
    # resume with one process: it computes only what is missing and gives the same tables
    resumed = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--matrix", str(TINY_MATRIX),
                              "--out", str(tmp_path), "--quiet"], env=ENV, capture_output=True, text=True, check=False,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for path, mtime in survivors.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"
    _same_tables(run_dir, tiny_run)


def test_launch_detection_and_the_distributed_flag(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    assert Ranks.start(None) is None  # a plain run stays single-process
    with pytest.raises(UserError, match="needs a launcher"):
        Ranks.start(True)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert Ranks.start(False) is None  # --no-distributed ignores a launcher's variables
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(UserError, match="MASTER_ADDR"):
        Ranks.start(None)


def test_a_bad_matrix_stops_every_rank_with_rank_0s_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_MATRIX.read_text().replace("fgsm: {eps: 0.035}", "fgsm: {attack: fgsn}"))
    cmd = [*_torchrun(tmp_path, 2)[:-6], "run", "--matrix", str(bad), "--out", str(tmp_path), "--quiet"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert "fgsn" in done.stderr and "rank 0 failed" in done.stderr  # rank 1 does not wait forever
    assert not list(tmp_path.glob("tiny/*/shards"))

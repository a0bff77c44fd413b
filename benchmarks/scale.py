"""Scaling of one matrix over processes (issue 8).

    python benchmarks/scale.py                       # tiny matrix at 1 and 2 CPU ranks
    python benchmarks/scale.py --eraser '{"preset": "paper-celebdf", "checkpoint": "e4e_ffhq_encode.pt"}'

Prints the wall time of the tiny test matrix (tests/tiny_matrix.yaml) run as one process and
under ``torchrun --nproc_per_node 2`` on CPU (gloo), each into a fresh folder, and whether their
tables are byte-identical. On a machine with CUDA where the ``eraser`` attack is registered and
its options are given, it also prints the images/s of one eraser cell (one source, all its
shards) on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu_allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny_matrix.yaml"


def timed_run(out: Path, ranks: int) -> float:
    bench = ["-m", "bench.cli", "run", "--matrix", str(TINY), "--out", str(out), "--quiet"]
    launcher = [] if ranks == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *launcher, *bench], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{ranks}-rank run failed:\n{done.stderr[-2000:]}")
    return seconds


def tables_of(out: Path) -> dict[str, bytes]:
    (tables,) = out.glob("tiny/*/tables")
    return {p.name: p.read_bytes() for p in sorted(tables.iterdir())}


def tiny_matrix_scaling() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        times = {n: timed_run(Path(tmp) / f"ranks{n}", n) for n in (1, 2)}
        same = tables_of(Path(tmp) / "ranks1") == tables_of(Path(tmp) / "ranks2")
    print(f"tiny matrix, {os.cpu_count()} CPU cores (wall time, process start-up included)")
    for n, seconds in times.items():
        how = "1 process (no torchrun)" if n == 1 else f"{n} ranks (torchrun, CPU, gloo)"
        print(f"  {how:<30} {seconds:6.1f} s")
    print(f"  speed-up at 2 ranks: {times[1] / times[2]:.2f}x; tables byte-identical: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


def eraser_cell(options: dict, detector: str, images: int, size: int, attack: str = "eraser",
                device: str = "cuda:0") -> None:
    """images/s of the eraser (or ``attack``) over one (source, attack) cell on ``device``."""
    import torch

    from bench.config import parse_matrix
    from bench.runner import MatrixRun, build
    from bench.store import RunStore

    data = {"name": "scale-eraser", "seed": 0, "device": device, "batch_size": options.pop("batch_size", 8),
            "shard_size": options.pop("shard_size", 16), "dataset": {"name": "synthetic", "n": 2 * images, "size": size},
            "detectors": {"source": {"detector": detector}}, "attacks": {"eraser": {"attack": attack, **options}}}
    cfg = parse_matrix(data, Path("benchmarks/scale.py"))
    built = build(cfg, images, device)
    sync = torch.cuda.synchronize if built.device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        run = MatrixRun(cfg, built, RunStore.create(Path(tmp), {**cfg.resolved(), "limit": images}), quiet=True)
        if len(run.shards) < 2:
            sys.exit(f"--images {images}: give more than one shard ({cfg.shard_size} images) to time")
        run.generate("source", "eraser", 0)  # warm-up shard: kernels, cuDNN autotuning
        sync()
        started = time.perf_counter()
        for k in range(1, len(run.shards)):
            run.generate("source", "eraser", k)
        sync()
        seconds = time.perf_counter() - started
    n = sum(len(s) for s in run.shards[1:])
    where = torch.cuda.get_device_name(built.device) if built.device.type == "cuda" else "cpu"
    print(f"{attack} cell on {where}: {n} images in {seconds:.1f} s "
          f"= {n / seconds:.2f} images/s (detector {detector}, {size}px, options {json.dumps(options)})")


def main() -> None:
    keep_freed_memory()  # glibc: reuse freed activations instead of page-faulting them in each step
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eraser", help="JSON options of the eraser attack (checkpoints, preset, ...)")
    parser.add_argument("--detector", default="tiny_cnn", help="source detector of the eraser cell")
    parser.add_argument("--images", type=int, default=64, help="fake images in the eraser cell")
    parser.add_argument("--size", type=int, default=256, help="synthetic image size for the eraser cell")
    parser.add_argument("--skip-cpu", action="store_true", help="only the eraser cell")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if not args.skip_cpu:
        tiny_matrix_scaling()

    import torch

    from bench.registry import ATTACKS

    if not torch.cuda.is_available():
        print("eraser cell: skipped (no CUDA device)")
    elif "eraser" not in ATTACKS:
        print("eraser cell: skipped (the eraser attack is not registered in this checkout)")
    elif args.eraser is None:
        print("eraser cell: skipped (pass --eraser '{\"preset\": ..., \"checkpoint\": ...}' with its models)")
    else:
        eraser_cell(json.loads(args.eraser), args.detector, args.images, args.size)


if __name__ == "__main__":
    main()

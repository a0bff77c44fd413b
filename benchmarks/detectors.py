"""Forward + backward throughput of every detector family, the cost an attack step pays.

    python -m benchmarks.detectors                        # full size, 256 px, batch 8, 2 timed iterations
    python -m benchmarks.detectors --preset tiny --size 64 --iters 10
    python -m benchmarks.detectors --only mat,recce --batch 16

Each iteration runs ``p_fake(x).sum().backward()`` with gradients w.r.t. the input (eval mode, as
the attacks use the detectors), after one warm-up iteration. Images/s = batch / median seconds.
Random weights; on CUDA when present (bf16 autocast with ``--amp``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from bench.cpu_allocator import keep_freed_memory
from bench.registry import create_detector

FAMILIES = ("efficientnet_b4", "xception", "mat", "recce")


def time_detector(name: str, batch: int, size: int, iters: int, device: str, amp: bool,
                  preset: str | None) -> tuple[float, int]:
    """-> (images per second, parameter count)."""
    kwargs = {"preset": preset} if preset else {}
    det = create_detector(name, **kwargs).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    seconds = []
    for i in range(iters + 1):  # the first iteration warms up allocators and kernels
        xi = x.clone().requires_grad_(True)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            det.p_fake(xi).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds), sum(p.numel() for p in det.parameters())


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # glibc: reuse freed activations instead of page-faulting them in each step
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(FAMILIES), help="comma-separated detector names")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--preset", default=None, help="detector preset, e.g. tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    args = parser.parse_args(argv)

    cpu = platform.processor() or platform.machine()
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else cpu}), "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"batch {args.batch}, {args.size} px, preset {args.preset or 'full'}, {args.iters} timed iterations")
    print(f"{'detector':<18}{'params (M)':>12}{'fwd+bwd img/s':>16}")
    for name in args.only.split(","):
        rate, n_params = time_detector(name.strip(), args.batch, args.size, args.iters, args.device,
                                       args.amp, args.preset)
        print(f"{name:<18}{n_params / 1e6:>12.2f}{rate:>16.2f}", flush=True)


if __name__ == "__main__":
    main()

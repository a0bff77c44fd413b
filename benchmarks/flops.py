"""FLOPs of an eraser run (counted with torch.utils.flop_counter) and the bf16 peak they are
measured against, for the "fraction of peak FLOP/s" line of benchmarks/eraser.py.

The count is the work the paper's eraser must do, whatever the implementation: one encoder
pass, then per step one generator + detector forward and the backward to the latent (input
gradients only: no weight gradients are asked for), then the final render. It is counted once
on the whole batch; matrix products and convolutions only, as flop_counter does.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.models.latent import LatentStack
from bench.types import Detector

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' datasheets, matched on
# torch.cuda.get_device_name(); the first matching row wins. --peak-tflops overrides.
BF16_PEAK_TFLOPS = (
    (("H200",), 989.4),
    (("H100", "PCIe"), 756.0),
    (("H100", "NVL"), 835.0),
    (("H100",), 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (("A100",), 312.0),
)


def bf16_peak_tflops(device_name: str) -> float | None:
    for words, peak in BF16_PEAK_TFLOPS:
        if all(w in device_name for w in words):
            return peak
    return None


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def eraser_flops(stack: LatentStack, detector: Detector, x01: torch.Tensor, steps: int) -> dict[str, int]:
    """FLOPs of encoder, one walk step, the final render and the whole run for batch ``x01``
    (every counted op is linear in the batch, so count one image where memory is tight)."""
    size = x01.shape[-1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        w0 = stack.invert(x01)  # counted as it runs: the encoder pass is needed once anyway
    encoder = int(counter.get_total_flops())

    def step() -> None:
        w = w0.detach().requires_grad_(True)
        p = detector.p_fake(stack.render01(w, "const", size=size)).float()
        torch.autograd.grad((p ** 2).sum(), w)

    walk_step = _count(step)
    # grad mode on (nothing is differentiated): under no_grad the generator's constant input is a
    # parameter view that requires grad without a grad_fn, which flop_counter's module tracker rejects
    render = _count(lambda: stack.render01(w0.detach(), "const", size=size))
    return {"encoder": encoder, "step": walk_step, "render": render,
            "total": encoder + steps * walk_step + render}

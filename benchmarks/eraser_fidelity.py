"""Measured sizes for the "paper preset vs official code" table (docs/latent.md).

    OMP_NUM_THREADS=2 python -m benchmarks.eraser_fidelity [--size 256] [--frames 2] [--steps 10]

On a StyleGAN2 (``--size`` px, channel multiplier 1, style_dim 512) and a full IR-SE50 e4e with
the deterministic weight fill of reference/PARITY.md, and a small CNN detector calibrated so the
inversion starts out fake, it prints:

- bf16 and the inversion: how far bf16 autocast moves ``w0 = E(x) + latent_avg`` (before
  ``invert()`` was kept in fp32);
- bf16 and the walk: fp32 inversion, then the walk with and without bf16 autocast (constant
  noise): W+ coordinates that differ after 1 and after all steps, the largest code difference,
  p_fake and image differences of the returned images;
- face_pool: the official ``AdaptiveAvgPool2d(256)`` on a smaller generator's output (pixel
  replication) against our bilinear resize, in grey levels and in p_fake.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from attacks.eraser import ArtifactEraser
from bench.models.e4e import Encoder4Editing
from bench.models.latent import LatentStack
from bench.models.stylegan2 import Generator
from bench.types import resize_to
from detectors.tiny import TinyCNN
from tests.latent_support import deterministic_fill


def build(size: int) -> tuple[LatentStack, TinyCNN]:
    g = Generator(size, style_dim=512, n_mlp=8, channel_multiplier=1).eval()
    deterministic_fill(g, "generator")
    e = Encoder4Editing(n_styles=g.n_latent, input_size=256).eval()
    deterministic_fill(e, "encoder")
    stack = LatentStack(e, g, g.mean_latent(1000, torch.Generator().manual_seed(0)))
    return stack, TinyCNN(width=8, input_size=256, seed=1).eval()


def calibrate(detector: TinyCNN, images: torch.Tensor) -> None:
    """Scale and centre the random head so these images score p_fake ~ 0.75 with a logit spread
    of ~0.5 (unsaturated: the walk has a gradient to follow)."""
    with torch.no_grad():
        logits = detector(images)
        spread = (logits[:, 1] - logits[:, 0]).std().clamp_min(1e-6)
        detector.head.weight.mul_(0.5 / spread)
        detector.head.bias.mul_(0.5 / spread)
        logits = detector(images)
        detector.head.bias[1] += 1.1 - (logits[:, 1] - logits[:, 0]).mean()


def fmt(p: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in p.tolist()) + "]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step", type=float, default=0.001)
    args = ap.parse_args()
    torch.manual_seed(0)
    stack, detector = build(args.size)
    x = torch.rand(args.frames, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    x = F.avg_pool2d(x, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)  # smooth, face-crop-like
    t0 = time.time()
    with torch.no_grad():
        w0 = stack.invert(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            w0_bf16 = stack.invert(x).float()
        calibrate(detector, stack.render01(w0, "const", size=256))
        print(f"p_fake of the inversion {fmt(detector.p_fake(stack.render01(w0, 'const', size=256)))}")
    shift = (w0_bf16 - w0).abs()
    print(f"bf16 invert: max |dw0| {shift.max():.4f}, mean {shift.mean():.5f} "
          f"(= {shift.max() / args.step:.1f} steps of alpha {args.step})")

    def walk(amp: bool, steps: int):
        atk = ArtifactEraser(stack, step=args.step, steps=steps, noise="const", amp=amp)
        return atk.search(x, detector)

    one_fp32, one_bf16 = walk(False, 1), walk(True, 1)
    full_fp32, full_bf16 = walk(False, args.steps), walk(True, args.steps)
    assert torch.equal(one_fp32.w0, one_bf16.w0)
    for label, a, b in (("1 step", one_fp32, one_bf16), (f"{args.steps} steps", full_fp32, full_bf16)):
        differ = ((a.w - b.w).abs() > 1e-7).float().mean()
        with torch.no_grad():
            pa, pb = detector.p_fake(a.output.adv01), detector.p_fake(b.output.adv01)
        print(f"bf16 walk, {label}: W+ coordinates differing {100 * differ:.2f} %, max |dw| "
              f"{(a.w - b.w).abs().max():.4f}, p_fake fp32 {fmt(pa)} bf16 {fmt(pb)}, "
              f"max |d image| {255 * (a.output.adv01 - b.output.adv01).abs().max():.2f} grey levels")

    small = Generator(128, style_dim=512, n_mlp=8, channel_multiplier=1).eval()
    deterministic_fill(small, "generator")
    with torch.no_grad():
        img = (small.synthesize(w0[:, :small.n_latent], noise="const").clamp(-1, 1) + 1) / 2
        official = torch.nn.AdaptiveAvgPool2d(256)(img)
        ours = resize_to(img, 256)
        p_off, p_ours = detector.p_fake(official), detector.p_fake(ours)
    diff = 255 * (official - ours).abs()
    print(f"face_pool 128 -> 256: mean |d| {diff.mean():.2f}, max {diff.max():.1f} grey levels; "
          f"p_fake replication {fmt(p_off)} bilinear {fmt(p_ours)}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()

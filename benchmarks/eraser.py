"""Steps/s of our artifact eraser against an official-style loop, same models, one process.

Official style (yangli-lab/Artifact-Eraser, as REFERENCE.md sec. 1 describes it): one clip of
frames at a time, fp32, two generator passes per step (a no-grad check pass, then the gradient
pass, each with fresh noise), rosinality's grouped ("fused") modulated conv, the detector fed
the generator output in [-1,1]. Ours: every clip in one batch, one generator pass per step, the
batched modulated-conv form in channels_last (CPU and CUDA), bf16 autocast on CUDA. Both run the paper's
semantics: fixed step count, no early stop, full mask, random noise, sign steps.

Models (random weights): StyleGAN2 256 px, channel_multiplier 1; EfficientNet-B4 (timm,
num_classes 2) at 256; a tiny e4e-style encoder (it runs once per image on both sides, so it is
kept tiny and the timing measures the walk; --official-encoder uses IR-SE50). The default run
is short; the official clip has 14 frames (--frames 14). Both sides run in one process with
bench.cpu_allocator's kept heap (ARTIFACT_BENCH_MALLOC=system for glibc's defaults).

    OMP_NUM_THREADS=2 python -m benchmarks.eraser --steps 2 --clips 2 --frames 2
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn.functional as F

from attacks.eraser import ArtifactEraser
from bench.cpu_allocator import keep_freed_memory
from bench.models.e4e import Encoder4Editing
from bench.models.latent import LatentStack
from bench.models.stylegan2 import Generator
from bench.types import Detector
from benchmarks.flops import bf16_peak_tflops, eraser_flops


class TimmDetector(Detector):
    """A timm classifier as a bench Detector ([real, fake] logits, mean = std = 0.5)."""

    def __init__(self, model: torch.nn.Module, input_size: int = 256):
        super().__init__(input_size=input_size)
        self.model = model

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self.model(xn)

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(xn), pre_logits=True)

    def cam_target_layers(self) -> list[torch.nn.Module]:
        return [self.model.conv_head]


def official_style_attack(stack: LatentStack, detector: TimmDetector, clip01: torch.Tensor, step: float,
                          steps: int, gen: torch.Generator) -> torch.Tensor:
    """One clip, fp32, two generator passes per step, fused modulated conv (the official loop)."""
    g = stack.generator
    with torch.no_grad():
        w = stack.invert(clip01)  # E(x) + latent_avg, as ours
    target = torch.zeros(clip01.shape[0])
    mask = torch.arange(g.n_latent)  # full mask
    for _ in range(steps):
        with torch.no_grad():  # the check pass: its result is ignored when there is no early stop
            check = g.synthesize(w, noise=g.random_noise(w.shape[0], gen))
            torch.softmax(detector.classify(check), dim=1)
        w = w.detach().requires_grad_(True)
        img = g.synthesize(w, noise=g.random_noise(w.shape[0], gen))
        p = torch.softmax(detector.classify(img), dim=1)[:, 1]
        grad, = torch.autograd.grad(F.mse_loss(p, target), w)
        w = w.detach()
        w[:, mask] = w[:, mask] - step * grad[:, mask].sign()
    with torch.no_grad():
        return (g.synthesize(w, noise=g.random_noise(w.shape[0], gen)) + 1) / 2


def build(args: argparse.Namespace) -> tuple[LatentStack, TimmDetector]:
    torch.manual_seed(0)
    g = Generator(args.size, 512, 8, channel_multiplier=args.channel_multiplier).eval()
    if args.official_encoder:
        e = Encoder4Editing(50, "ir_se", n_styles=g.n_latent).eval()
    else:
        # tiny (64 px input, box-pooled from 256): the encoder runs once per image on both sides
        e = Encoder4Editing(n_styles=g.n_latent, input_size=64, units=(1, 1, 1, 1), widths=(16, 16, 32, 32)).eval()
    d = TimmDetector(timm.create_model("efficientnet_b4", pretrained=False, num_classes=2).eval(), args.size).eval()
    return LatentStack(e, g, g.mean_latent(1000, torch.Generator().manual_seed(0))), d


def main() -> None:
    heap_kept = keep_freed_memory()  # for both sides: glibc reuses freed activations (bench/cpu_allocator.py)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--frames", type=int, default=2, help="frames per clip (official: 14)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--step", type=float, default=0.0006)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the best time of each counts")
    ap.add_argument("--max-batch", type=int, default=16,
                    help="our eraser's chunk size (memory bound on CPU; 0 = the whole batch at once)")
    ap.add_argument("--official-encoder", action="store_true", help="IR-SE50 encoder instead of a small one")
    ap.add_argument("--channel-multiplier", type=int, default=1, help="generator width (config-f at 1024: 2)")
    ap.add_argument("--flops", action=argparse.BooleanOptionalAction, default=None,
                    help="count the run's FLOPs and report FLOP/s (default: on CUDA only)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="bf16 peak to compare with (default: looked up by GPU name)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    stack, det = build(args)
    stack.to(dev)
    det.to(dev)
    x = torch.rand(args.clips * args.frames, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x.to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (allocator, oneDNN/cuDNN kernel choice) so neither side pays first-call costs
    for fused in (False, True):
        stack.generator.set_fused_modconv(fused)
        w = stack.invert(x[:1]).requires_grad_(True)
        torch.autograd.grad(det.classify(stack.generator.synthesize(w))[:, 1].sum(), w)

    ours = ArtifactEraser(stack, step=args.step, steps=args.steps, levels="full", noise="random",
                          max_batch=args.max_batch or None)

    def run_ours() -> float:  # all clips in one batch, one generator pass per step
        stack.generator.set_fused_modconv(False)
        sync()
        t0 = time.perf_counter()
        ours(x, torch.ones(len(x)), det, generator=torch.Generator().manual_seed(0))
        sync()
        return time.perf_counter() - t0

    def run_official() -> float:  # clip by clip, fp32, two passes per step, grouped modulated conv
        stack.generator.set_fused_modconv(True)
        gen = torch.Generator().manual_seed(0)
        sync()
        t0 = time.perf_counter()
        for c in range(args.clips):
            official_style_attack(stack, det, x[c * args.frames:(c + 1) * args.frames], args.step, args.steps, gen)
        sync()
        return time.perf_counter() - t0

    # interleaved repeats, best of each: a shared machine's load hits both sides alike
    t_ours, t_official = float("inf"), float("inf")
    for _ in range(args.repeats):
        t_ours = min(t_ours, run_ours())
        t_official = min(t_official, run_official())
    stack.generator.set_fused_modconv(False)

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}; {args.clips} clips x {args.frames} frames, {args.steps} steps, generator "
          f"{args.size} px cm{args.channel_multiplier}, EfficientNet-B4 at {args.size}; glibc heap kept: {heap_kept}")
    print(f"ours          : {args.steps / t_ours:8.4f} steps/s ({t_ours:.1f} s; max_batch {args.max_batch})")
    print(f"official-style: {args.steps / t_official:8.4f} steps/s ({t_official:.1f} s)")
    print(f"speed-up      : {t_official / t_ours:.2f}x")
    if args.flops if args.flops is not None else dev.type == "cuda":
        per_image = eraser_flops(stack, det, x[:1], args.steps)  # linear in the batch: one image suffices
        achieved = per_image["total"] * len(x) / t_ours / 1e12
        peak = args.peak_tflops or (bf16_peak_tflops(name) if dev.type == "cuda" else None)
        share = f" = {100 * achieved / peak:.1f}% of the {peak:g} TFLOP/s bf16 peak" if peak else ""
        print(f"ours FLOP/s   : {achieved:.3f} TFLOP/s ({per_image['step'] / 1e9:.1f} GFLOP per image and step){share}")


if __name__ == "__main__":
    main()

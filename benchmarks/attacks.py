"""Throughput of every pixel-space attack, and the harness overhead over torchattacks called directly.

    python -m benchmarks.attacks                 # from the repository root; 2 steps per iterative attack
    python -m benchmarks.attacks --steps 10      # the attacks' default step counts
    python -m benchmarks.attacks --only pgd,efaa --repeats 5
    python -m benchmarks.attacks --only difgsm,tifgsm,vmifgsm,sinifgsm,square --queries 50

Victim: timm ``efficientnet_b0`` (random weights, 2 classes) behind a minimal ``Detector`` at
256 px, batch 8, on CUDA when present. Images/s counts attacked images per second of wall time.
The overhead section times ``create_attack(...)(x, y, detector)`` against
``torchattacks.X(detector, ...)(x, y)`` on the same batch, interleaved, and prints the ratio of
medians (target <= 1.10). Square runs ``--queries`` queries per sample on labels set to the
victim's own clean predictions (so every sample is searched), with the seed the harness would use
passed to the direct call, so both sides do the same work.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import timm
import torch
import torchattacks

from attacks._common import draw_seed
from attacks.square import QUERIES_OUTSIDE_SEARCH
from bench.cpu_allocator import keep_freed_memory
from bench.registry import create_attack
from bench.types import Detector


class TimmDetector(Detector):
    """Any timm classifier as a 2-class detector (the benchmark's stand-in victim)."""

    def __init__(self, name: str = "efficientnet_b0", input_size: int = 256):
        super().__init__(input_size=input_size)
        self.net = timm.create_model(name, pretrained=False, num_classes=2)

    def classify(self, xn):
        return self.net(xn)

    def embed(self, xn):
        return self.net.forward_head(self.net.forward_features(xn), pre_logits=True)

    def cam_target_layers(self):
        return [self.net.conv_head]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def attack_specs(steps: int, queries: int) -> dict[str, tuple[str, dict]]:
    """name -> (registry name, kwargs); iterative attacks run ``steps`` steps, square ``queries``."""
    return {
        "fgsm": ("fgsm", {}),
        "pgd": ("pgd", {"steps": steps}),
        "mifgsm": ("mifgsm", {"steps": steps}),
        "fgsm official": ("fgsm", {"preset": "official-ffpp", "steps": steps}),
        "pgd official": ("pgd", {"preset": "official-ffpp", "steps": steps}),
        "mifgsm official": ("mifgsm", {"preset": "official-ffpp", "steps": steps}),
        "efaa block": ("efaa", {"preset": "block", "steps": steps}),
        "efaa global": ("efaa", {"preset": "global", "steps": steps}),
        "efaa hybrid": ("efaa", {"preset": "hybrid", "steps": steps}),
        "statattack": ("statattack", {"steps": steps}),
        "mstatattack": ("mstatattack", {"steps": steps}),
        "difgsm": ("difgsm", {"steps": steps}),
        "tifgsm": ("tifgsm", {"steps": steps}),
        "vmifgsm": ("vmifgsm", {"steps": steps}),
        "sinifgsm": ("sinifgsm", {"steps": steps}),
        "square": ("square", {"queries": queries}),
        "uniform_noise": ("uniform_noise", {}),
    }


def overhead_pairs(detector: torch.nn.Module, steps: int, queries: int) -> dict[str, tuple[Any, Callable]]:
    """name -> (our attack, a builder of the same torchattacks attack on the bare detector)."""
    eps, alpha = 8 / 255, 2 / 255  # the registry's defaults
    square_seed = draw_seed(torch.Generator().manual_seed(0))  # what ours seeds Square with
    iterative = {"pgd": torchattacks.PGD, "mifgsm": torchattacks.MIFGSM, "difgsm": torchattacks.DIFGSM,
                 "tifgsm": torchattacks.TIFGSM, "vmifgsm": torchattacks.VMIFGSM, "sinifgsm": torchattacks.SINIFGSM}
    pairs: dict[str, tuple[Any, Callable]] = {
        "fgsm": (create_attack("fgsm", eps=eps), lambda: torchattacks.FGSM(detector, eps=eps))}
    for name, direct in iterative.items():
        pairs[name] = (create_attack(name, steps=steps),
                       lambda direct=direct: direct(detector, eps=eps, alpha=alpha, steps=steps))
    pairs["square"] = (create_attack("square", queries=queries),
                       lambda: torchattacks.Square(detector, eps=eps, n_queries=queries - QUERIES_OUTSIDE_SEARCH,
                                                   seed=square_seed))
    return pairs


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # glibc: reuse freed activations instead of page-faulting them in each step
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="steps of every iterative attack")
    parser.add_argument("--queries", type=int, default=20, help="queries per sample of square")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per attack (median)")
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--only", default="", help="comma-separated subset of the attack names")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    detector = TimmDetector(args.model, args.size).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    reference = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    labels = torch.ones(args.batch, dtype=torch.long, device=device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {args.model} at {args.size} px, batch {args.batch}, {name}, torch {torch.__version__}")

    specs = attack_specs(args.steps, args.queries)
    only = [s for s in args.only.split(",") if s]
    print(f"{'attack':<18}{'steps':>6}{'s/batch':>10}{'images/s':>10}")
    for label, (registered, kwargs) in specs.items():
        if only and label.split()[0] not in only and label not in only:
            continue
        attack = create_attack(registered, **kwargs)
        gen = torch.Generator().manual_seed(0)

        def call(attack=attack, gen=gen):
            return attack(x, labels, detector, gen, reference=reference if attack.needs_reference else None)

        call()  # warm-up (allocator, cudnn autotune, lazy imports)
        seconds = statistics.median(timed(call, device) for _ in range(args.repeats))
        print(f"{label:<18}{attack.budget()['steps']:>6}{seconds:>10.3f}{args.batch / seconds:>10.1f}")

    if args.skip_overhead:
        return
    print("\n# harness overhead: ours / torchattacks direct (median of interleaved calls)")
    pairs = overhead_pairs(detector, args.steps, args.queries)
    with torch.no_grad():
        predicted = detector(x).argmax(1)  # square searches only the samples it classifies right
    print(f"{'attack':<18}{'ours s':>10}{'direct s':>10}{'ratio':>8}")
    for label, (ours, build_direct) in pairs.items():
        if only and label not in only:
            continue
        labels = predicted if label == "square" else torch.ones_like(predicted)
        ours_times, direct_times = [], []
        ours(x, labels, detector, torch.Generator().manual_seed(0))
        build_direct()(x, labels)
        def run_ours(ours=ours, labels=labels):
            return ours(x, labels, detector, torch.Generator().manual_seed(0))

        def run_direct(build_direct=build_direct, labels=labels):
            return build_direct()(x, labels)

        for _ in range(max(args.repeats, 5)):
            ours_times.append(timed(run_ours, device))
            direct_times.append(timed(run_direct, device))
        o, d = statistics.median(ours_times), statistics.median(direct_times)
        print(f"{label:<18}{o:>10.4f}{d:>10.4f}{o / d:>8.3f}")


if __name__ == "__main__":
    main()

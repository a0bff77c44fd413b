"""The artifact eraser (arXiv 2404.08341, Sec. 2.3) and its inversion-only control.

Eraser: ``w0 = E(x) + latent_avg``; then per step one generator pass ``G(w)``, the detector's
``p_fake``, ``loss = sum (p_fake - target)^2`` in fp32 (the MSE of the paper; the sum keeps
samples independent and does not change the sign) and ``w[:, rows] -= step * sign(dL/dw)`` on
the masked W+ rows only. The paper preset has no projection, no early stop, random StyleGAN
noise on every pass and a fixed number of steps; the official scripts' deviations are switches
(see docs/latent.md). Inversion control: the image ``G(E(x))`` with zero steps.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attacks._latent_health import LatentWalkHealth
from bench.attack_health import grad_or_zero
from bench.detector_contract import checked_p_fake, detector_name
from bench.errors import UserError
from bench.metrics.quality import truncate_uint8
from bench.models.latent import LatentStack, build_latent_stack
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector

LEVELS_1024 = {"S": (0, 6), "M": (6, 12), "D": (12, 18)}  # paper: rows w1-w6, w7-w12, w13-w18


def level_rows(levels: str | Sequence[int], n_latent: int, bands: str = "absolute") -> list[int]:
    """W+ rows to update. ``levels``: "full"/"all", letters from "SMD" (e.g. "S", "MD"), an
    explicit row list, or a string like "0-5,12". ``bands``: "absolute" keeps the paper's
    resolution bands (S rows act at 4-32 px, M at 32-256 px, D at 256 px and above: rows 0-5,
    6-11, 12+; a row index acts at the same resolution in every generator size, so smaller
    generators simply lack part of D); "relative" splits the rows into thirds (for 64-128 px
    demo generators, whose D band would otherwise be empty)."""
    if isinstance(levels, str):
        spec = levels.strip()
        if spec.lower() in ("full", "all"):
            return list(range(n_latent))
        if re.fullmatch(r"[SMDsmd]+", spec):
            rows: set[int] = set()
            for letter in spec.upper():
                lo, hi = _band(letter, n_latent, bands)
                rows.update(range(lo, min(hi, n_latent)))
            if not rows:
                raise UserError(f"level {spec!r} selects no W+ row of a {n_latent}-row generator with "
                                f"level_bands={bands!r}; use level_bands='relative' or explicit rows")
            return sorted(rows)
        if re.fullmatch(r"[\d\s,\-]+", spec):
            out: set[int] = set()
            for part in filter(None, (p.strip() for p in spec.split(","))):
                a, _, b = part.partition("-")
                out.update(range(int(a), int(b or a) + 1))
            levels = sorted(out)
        else:
            raise UserError(f"levels={levels!r} is not understood; use full, S, M, D (or combinations), or rows like 0-5")
    rows_list = sorted({int(r) for r in levels})
    if not rows_list or rows_list[0] < 0 or rows_list[-1] >= n_latent:
        raise UserError(f"levels={levels!r}: rows must lie in 0..{n_latent - 1}")
    return rows_list


def _band(letter: str, n_latent: int, bands: str) -> tuple[int, int]:
    if bands == "absolute":
        lo, hi = LEVELS_1024[letter]
        return lo, (n_latent if letter == "D" else hi)
    if bands == "relative":
        cuts = (0, round(n_latent / 3), round(2 * n_latent / 3), n_latent)
        k = "SMD".index(letter)
        return cuts[k], cuts[k + 1]
    raise UserError(f"level_bands must be 'absolute' or 'relative', got {bands!r}")


def autocast_for(device: torch.device, amp: bool | None):
    """bf16 autocast on CUDA (unless amp=False); a no-op context elsewhere."""
    use = device.type == "cuda" if amp is None else amp
    if use and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device):
    """Leave any enclosing autocast: fp32 for the inversion and the returned render. In bf16 the
    encoder moves w0 by up to 0.034 (six steps of alpha = 0.001) before the walk begins."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class LatentAttackBase(Attack):
    is_latent = True

    def __init__(self, stack: LatentStack, noise: str = "random", seed: int = 0, amp: bool | None = None):
        if noise not in ("random", "const"):
            raise UserError(f"noise must be 'random' or 'const', got {noise!r}")
        self.stack, self.noise, self.seed, self.amp = stack, noise, int(seed), amp

    def _prepare(self, x01: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
        if next(self.stack.parameters()).device != x01.device:
            self.stack.to(x01.device)
        return generator if generator is not None else torch.Generator().manual_seed(self.seed)

    def _noise(self, batch: int, gen: torch.Generator):
        g = self.stack.generator
        return g.const_noise() if self.noise == "const" else g.random_noise(batch, gen)

    def _invert(self, x01: torch.Tensor) -> torch.Tensor:
        """w0 = E(x) + latent_avg in fp32, whatever ``amp`` says."""
        with torch.no_grad(), full_precision(x01.device):
            return self.stack.invert(x01.float()).float()

    def _render(self, w: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
        img = self.stack.render01(w, self._noise(w.shape[0], gen), size=size)
        # channels_last propagates through the detector's convs: tensor cores on CUDA, and
        # oneDNN runs EfficientNet-B4 forward+backward ~1.3x faster on CPU in that layout
        return img.contiguous(memory_format=torch.channels_last)


@dataclass
class EraserResult:
    output: AttackOutput
    w0: torch.Tensor  # the inversion's W+ codes
    w: torch.Tensor  # the final W+ codes (frozen samples: the codes of their passing image)


# How the ASR's "inversion still fake" condition is graded (docs/latent.md):
#   walk  - the walk's step-0 render G(w0), clamped and stored 8-bit like every image;
#   paper - as the official evaluation: re-invert the 8-bit original, render it with a fresh noise
#           draw and grade that render unclamped with the source detector (info
#           "p_fake_inversion_check", which the runner uses for the white-box target).
INVERSION_CHECKS = ("walk", "paper")


class ArtifactEraser(LatentAttackBase):
    """Masked sign-gradient walk in W+ until the detector calls the face real."""

    def __init__(self, stack: LatentStack, step: float = 0.001, steps: int = 100, levels: str | Sequence[int] = "full",
                 level_bands: str = "absolute", target: float = 0.0, noise: str = "random",
                 kappa: float | None = None, clamp: bool = False, ball: float | None = None,
                 momentum: float | None = None, double_pass: bool = False, ignore_mask: bool = False,
                 inversion_check: str = "walk", seed: int = 0, amp: bool | None = None,
                 max_batch: int | None = None):
        super().__init__(stack, noise, seed, amp)
        if inversion_check not in INVERSION_CHECKS:
            raise UserError(f"inversion_check must be one of {', '.join(INVERSION_CHECKS)}, got {inversion_check!r}")
        self.inversion_check = inversion_check
        self.max_batch = None if not max_batch else int(max_batch)
        self.step, self.steps, self.target = float(step), int(steps), float(target)
        self.levels, self.level_bands = levels, level_bands
        self.rows = level_rows("full" if ignore_mask else levels, stack.n_latent, level_bands)
        self.kappa = None if kappa is None else float(kappa)
        self.clamp, self.ball, self.momentum = bool(clamp), ball, momentum
        self.double_pass = bool(double_pass)

    def budget(self) -> dict[str, Any]:
        return {"norm": "sign-step in W+", "eps": self.step, "steps": self.steps}

    def _p_fake(self, detector: Detector, img: torch.Tensor) -> torch.Tensor:
        if self.clamp:
            img = img.clamp(0, 1)
        return checked_p_fake(detector_name(detector), detector, img).float()

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None, reference: torch.Tensor | None = None) -> AttackOutput:
        return self.search(x01, detector, generator).output

    def search(self, x01: torch.Tensor, detector: Detector, generator: torch.Generator | None = None) -> EraserResult:
        """The walk itself; also returns the latents ``w0`` and ``w`` (B, n_latent, style_dim).
        Batches above ``max_batch`` run as consecutive chunks (each chunk fully batched): the
        backward pass through a 256 px generator keeps ~0.3 GB of activations per sample."""
        gen = self._prepare(x01, generator)
        if not self.max_batch or x01.shape[0] <= self.max_batch:
            return self._search(x01, detector, gen)
        parts = [self._search(chunk, detector, gen) for chunk in x01.split(self.max_batch)]
        info = {k: torch.cat([p.output.info[k] for p in parts]) for k in parts[0].output.info}
        return EraserResult(AttackOutput(torch.cat([p.output.adv01 for p in parts]), info),
                            torch.cat([p.w0 for p in parts]), torch.cat([p.w for p in parts]))

    def _search(self, x01: torch.Tensor, detector: Detector, gen: torch.Generator) -> EraserResult:
        b, size, dev = x01.shape[0], x01.shape[-1], x01.device
        amp = autocast_for(dev, self.amp)
        w0 = self._invert(x01)
        # The inversion image G(w0) is the walk's first render (a step-0 pass sees w = w0 for every
        # sample), so it costs no generator pass of its own.
        inversion: torch.Tensor | None = None
        rowmask = torch.zeros(1, w0.shape[1], 1, dtype=torch.bool, device=dev)
        rowmask[:, self.rows] = True
        w = w0.clone()
        velocity = torch.zeros_like(w0)
        done = torch.zeros(b, dtype=torch.bool, device=dev)  # frozen by the kappa early stop
        steps_taken = torch.full((b,), self.steps, dtype=torch.long, device=dev)
        out = torch.zeros(b, 3, size, size, device=dev)
        p_walk = torch.full((b,), float("nan"), device=dev)
        health = LatentWalkHealth(b, dev, self.rows)
        for t in range(self.steps):
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            w_act = w[idx]
            if self.double_pass:  # official: a no-grad check pass with its own noise draw
                with torch.no_grad(), amp:
                    check = self._render(w_act, gen, size)
                    p_check = self._p_fake(detector, check)
                if t == 0:
                    health.start(p_check)
                if inversion is None:
                    inversion = check.float().clamp(0, 1)
                self._freeze(idx, p_check, check, t, done, steps_taken, out, p_walk)
                keep = ~done[idx]
                idx, w_act = idx[keep], w_act[keep]
                if idx.numel() == 0:
                    break
            w_req = w_act.detach().requires_grad_(True)
            with amp:
                img = self._render(w_req, gen, size)
                p = self._p_fake(detector, img)
            if inversion is None:
                inversion = img.detach().float().clamp(0, 1)
            loss = ((p - self.target) ** 2).sum()
            grad = grad_or_zero(loss, w_req)  # zeros, flagged, when no gradient path reaches w
            p = p.detach()
            p_walk[idx] = p
            if t == 0 and not self.double_pass:
                health.start(p)
            frozen = torch.zeros_like(idx, dtype=torch.bool)
            if not self.double_pass:
                # the passing image is the one just graded; frozen rows get no update
                frozen = self._freeze(idx, p, img.detach(), t, done, steps_taken, out, p_walk)
            health.step(idx, (p - self.target) ** 2, grad, updated=~frozen, still_fake=p > 0.5)
            if not self.double_pass:
                grad = grad.masked_fill(frozen[:, None, None], 0.0)
            direction = grad
            if self.momentum is not None:
                v = velocity[idx] * self.momentum + grad / grad.abs().mean(dim=(1, 2), keepdim=True).clamp_min(1e-20)
                velocity[idx] = v
                direction = v
            new = w_act - self.step * torch.sign(direction.float())
            if self.ball is not None:
                new = w0[idx] + (new - w0[idx]).clamp(-self.ball, self.ball)
            still = ~done[idx]
            w[idx] = torch.where(rowmask & still[:, None, None], new, w_act)
        # The returned image: a frozen sample keeps its passing render (as the official attack.py);
        # the others get one more render of their final codes, in fp32 whatever ``amp`` says.
        with torch.no_grad(), full_precision(dev):
            if inversion is None:  # steps == 0
                inversion = self._render(w0, gen, size).float().clamp(0, 1)
            idx = (~done).nonzero().squeeze(1)
            if idx.numel():
                out[idx] = self._render(w[idx], gen, size).float()
        adv = out.clamp(0, 1).contiguous()
        inversion = inversion.contiguous()
        info = {"inversion": inversion, "steps": steps_taken, "latent_change": (w - w0).norm(dim=2),
                "p_fake_walk": p_walk, **health.info()}
        if self.inversion_check == "paper":
            info["p_fake_inversion_check"] = self._official_inversion_check(x01, detector, gen)
        return EraserResult(AttackOutput(adv, info), w0, w)

    def _official_inversion_check(self, x01: torch.Tensor, detector: Detector, gen: torch.Generator) -> torch.Tensor:
        """p_fake of G(E(8-bit original)) under a fresh noise draw, unclamped, in fp32: the
        official evaluation's "inversion still fake" grade. Drawn after the walk, so the walk's
        noise stream is the same with either ``inversion_check``."""
        with torch.no_grad(), full_precision(x01.device):
            w_check = self._invert(truncate_uint8(x01))
            return detector.p_fake(self._render(w_check, gen, x01.shape[-1])).float()

    def _freeze(self, idx, p, img, t, done, steps_taken, out, p_walk) -> torch.Tensor:
        """Apply the kappa early stop (p_real - p_fake > kappa) to rows ``idx``; returns the
        mask (over idx) of rows frozen now."""
        if self.kappa is None:
            return torch.zeros_like(idx, dtype=torch.bool)
        passing = (1 - p) - p > self.kappa
        if passing.any():
            j = idx[passing]
            done[j] = True
            steps_taken[j] = t
            out[j] = img[passing].float()
            p_walk[j] = p[passing]
        return passing


class InversionOnly(LatentAttackBase):
    """Control: the inversion G(E(x)) itself, zero steps. Its ASR (applied by the runner):
    original fake and G(E(x)) real."""

    inversion_condition = False  # the runner grades it without the "inversion still fake" condition

    def budget(self) -> dict[str, Any]:
        return {"norm": "sign-step in W+", "eps": 0.0, "steps": 0}

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None, reference: torch.Tensor | None = None) -> AttackOutput:
        gen = self._prepare(x01, generator)
        w0 = self._invert(x01)
        with torch.no_grad(), full_precision(x01.device):
            img = self._render(w0, gen, x01.shape[-1]).float().clamp(0, 1).contiguous()
        b = x01.shape[0]
        info = {"inversion": img, "steps": torch.zeros(b, dtype=torch.long, device=x01.device),
                "latent_change": torch.zeros(b, w0.shape[1], device=x01.device)}
        return AttackOutput(img.clone(), info)


_STACK_KEYS = ("checkpoint", "encoder", "generator", "latent_avg", "encoder_checkpoint", "generator_checkpoint",
               "encoder_input_size", "trust_checkpoint")

# The paper and official presets run in fp32 (amp=False) unless the user passes amp=True: the
# official code has no autocast, and bf16 moves the walk (docs/latent.md, "paper preset vs
# official code").
_PAPER = {"steps": 100, "levels": "full", "noise": "random", "target": 0.0, "kappa": None, "clamp": False,
          "amp": False}
PRESETS = {
    "paper-celebdf": dict(_PAPER, step=0.0006),
    "paper-dfdc": dict(_PAPER, step=0.001),
    "paper-ffpp": dict(_PAPER, step=0.001),
    # official README (attack/attack_celebdf.py): alpha 0.0002 x 50, target label 1, one
    # generator pass per step, the unclamped render graded
    "official-readme": dict(_PAPER, step=0.0002, steps=50, target=1.0, inversion_check="paper"),
    # official FF++ script (attack/attack.py): alpha 0.0008 x 1000, kappa 0.2 early stop, mask
    # ignored, a no-grad check pass then a gradient pass per step, the render clamped in both
    "official-ffpp-script": dict(_PAPER, step=0.0008, steps=1000, kappa=0.2, clamp=True, double_pass=True,
                                 ignore_mask=True, inversion_check="paper"),
    # bugs fixed, reproducible: fixed noise, output clamped before grading
    "clean": {"step": 0.001, "steps": 100, "levels": "full", "noise": "const", "target": 0.0, "clamp": True},
}


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    stack_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _STACK_KEYS}
    return stack_kw, kwargs


@register_attack("eraser", version="1", accepts=(build_latent_stack, ArtifactEraser), threat_model="latent", presets=PRESETS)
def eraser(**kwargs: Any) -> ArtifactEraser:
    """Artifact eraser: masked sign-gradient walk in StyleGAN2 W+ (arXiv 2404.08341)."""
    stack_kw, opts = _split(dict(kwargs))
    stack = opts.pop("stack", None) or build_latent_stack(**stack_kw)
    return ArtifactEraser(stack, **opts)


@register_attack("inversion", version="1", accepts=(build_latent_stack, InversionOnly), threat_model="latent",
                 presets={"paper": {"noise": "random", "amp": False}, "clean": {"noise": "const"}})
def inversion(**kwargs: Any) -> InversionOnly:
    """Inversion-only control: G(E(x)) with zero latent steps."""
    stack_kw, opts = _split(dict(kwargs))
    stack = opts.pop("stack", None) or build_latent_stack(**stack_kw)
    return InversionOnly(stack, **opts)

"""The eraser's presets against the official scripts, switch by switch (issue #15): the FF++
script clamps in both passes, early-stopped samples keep their passing render, the README
script makes one generator pass per step, and the inversion is fp32 whatever ``amp`` says."""

from __future__ import annotations

import pytest
import torch

from attacks.eraser import PRESETS
from bench.registry import create_attack
from tests.test_eraser import models  # noqa: F401  (the shared small stack + detector fixture)


class SpyDetector:
    """Delegates to a detector and keeps a copy of every image it is asked to grade."""

    def __init__(self, detector):
        self.detector, self.seen, self.graded_with_grad = detector, [], []

    def p_fake(self, x01: torch.Tensor) -> torch.Tensor:
        self.seen.append(x01.detach().clone())
        self.graded_with_grad.append(x01.requires_grad)
        return self.detector.p_fake(x01)


def count_generator_passes(stack, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = stack.generator.synthesize

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(stack.generator, "synthesize", counted)
    return calls


def test_ffpp_script_preset_clamps_the_render_in_both_passes(models):  # noqa: F811
    stack, d, x = models
    spy = SpyDetector(d)
    atk = create_attack("eraser", stack=stack, preset="official-ffpp-script", step=0.02, steps=3)
    atk.search(x, spy, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the raw renders of this generator do leave [0, 1] ...
        raw = stack.render01(stack.invert(x), "const", size=64)
    assert raw.min() < 0 or raw.max() > 1
    # ... but every image graded, in the no-grad check pass and in the gradient pass, is clamped
    assert len(spy.seen) == 2 * 3 and spy.graded_with_grad == [False, True] * 3
    assert all(img.min() >= 0 and img.max() <= 1 for img in spy.seen)
    assert PRESETS["official-ffpp-script"]["clamp"] is True and "resample_output" not in PRESETS["official-ffpp-script"]


@pytest.mark.parametrize("preset", ["official-ffpp-script", "paper-ffpp"])
def test_frozen_sample_returns_its_passing_render_under_random_noise(models, preset):  # noqa: F811
    stack, d, x = models
    spy = SpyDetector(d)
    atk = create_attack("eraser", stack=stack, preset=preset, step=0.01, steps=12, kappa=0.0, clamp=True,
                        noise="random")
    res = atk.search(x, spy, torch.Generator().manual_seed(3))
    frozen = (res.output.info["steps"] < 12).nonzero().squeeze(1).tolist()
    assert 1 <= len(frozen) < 8, res.output.info["steps"]
    for i in frozen:  # the returned image is one the detector graded (and passed), not a new draw
        hits = [img[j] for img in spy.seen for j in range(len(img)) if torch.equal(img[j], res.output.adv01[i])]
        assert hits, f"sample {i}: returned image was never graded"
        with torch.no_grad():
            p = d.p_fake(hits[0][None])
        assert (1 - p) - p > 0


def test_official_readme_makes_one_generator_pass_per_step(models, monkeypatch):  # noqa: F811
    stack, d, x = models
    calls = count_generator_passes(stack, monkeypatch)
    spy = SpyDetector(d)
    atk = create_attack("eraser", stack=stack, preset="official-readme", steps=4)
    atk.search(x, spy, torch.Generator().manual_seed(0))
    assert len(spy.seen) == 4 and all(spy.graded_with_grad)  # one graded pass per step, with gradient
    assert len(calls) == 4 + 1  # one generator pass per step, plus the render of the final codes


def test_invert_is_fp32_whatever_amp_says(models):  # noqa: F811
    stack, d, x = models
    on = create_attack("eraser", stack=stack, step=0.02, steps=1, noise="const", amp=True).search(x, d)
    off = create_attack("eraser", stack=stack, step=0.02, steps=1, noise="const", amp=False).search(x, d)
    assert torch.equal(on.w0, off.w0)
    inv_on = create_attack("inversion", stack=stack, preset="clean", amp=True)(x, torch.ones(8), d)
    inv_off = create_attack("inversion", stack=stack, preset="clean", amp=False)(x, torch.ones(8), d)
    assert torch.equal(inv_on.adv01, inv_off.adv01)


def test_paper_and_official_presets_are_fp32_unless_asked(models):  # noqa: F811
    stack, _, _ = models
    for name in ("paper-celebdf", "paper-dfdc", "paper-ffpp", "official-readme", "official-ffpp-script"):
        assert create_attack("eraser", stack=stack, preset=name).amp is False
    assert create_attack("eraser", stack=stack, preset="paper-ffpp", amp=True).amp is True
    assert create_attack("inversion", stack=stack, preset="paper").amp is False

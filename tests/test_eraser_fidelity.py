"""The eraser's presets against the official scripts, switch by switch (issue #15): the FF++
script clamps in both passes, early-stopped samples keep their passing render, the README
script makes one generator pass per step, and the inversion is fp32 whatever ``amp`` says."""

from __future__ import annotations

import pytest
import torch
import yaml

from attacks.eraser import PRESETS
from bench.config import load_matrix
from bench.metrics.quality import truncate_uint8
from bench.models.checkpoints import save_e4e
from bench.registry import create_attack, create_dataset, create_detector
from bench.runner import run_matrix
from tests.test_eraser import models  # noqa: F401  (the shared small stack + detector fixture)


class SpyDetector:
    """Delegates to a detector and keeps a copy of every image it is asked to grade."""

    def __init__(self, detector):
        self.detector, self.seen, self.graded_with_grad = detector, [], []

    def _record(self, x01: torch.Tensor) -> None:
        self.seen.append(x01.detach().clone())
        self.graded_with_grad.append(x01.requires_grad)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:  # the logits, as the contract check reads them
        self._record(x01)
        return self.detector(x01)

    def p_fake(self, x01: torch.Tensor) -> torch.Tensor:
        self._record(x01)
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
    atk = create_attack("eraser", stack=stack, preset="official-ffpp-script", step=0.02, steps=3,
                        inversion_check="walk")  # the walk alone; the check pass is tested below
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
    atk = create_attack("eraser", stack=stack, preset="official-readme", steps=4, inversion_check="walk")
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


def test_paper_inversion_check_grades_a_fresh_unclamped_re_inversion(models):  # noqa: F811
    stack, d, x = models
    walk = create_attack("eraser", stack=stack, step=0.02, steps=3, noise="random").search(
        x, d, torch.Generator().manual_seed(4))
    paper = create_attack("eraser", stack=stack, step=0.02, steps=3, noise="random", inversion_check="paper").search(
        x, d, torch.Generator().manual_seed(4))
    assert torch.equal(paper.w, walk.w) and torch.equal(paper.output.adv01, walk.output.adv01)  # walk untouched
    assert "p_fake_inversion_check" not in walk.output.info
    const = create_attack("eraser", stack=stack, step=0.02, steps=1, noise="const", inversion_check="paper")
    got = const.search(x, d).output.info["p_fake_inversion_check"]
    with torch.no_grad():  # the 8-bit original re-inverted, its render graded without any clamp
        render = stack.render01(stack.invert(truncate_uint8(x)), "const", size=64)
        expected = d.p_fake(render)
    assert render.min() < 0 or render.max() > 1
    assert torch.allclose(got, expected, atol=1e-6)
    assert PRESETS["official-readme"]["inversion_check"] == PRESETS["official-ffpp-script"]["inversion_check"] == "paper"


def test_runner_uses_the_paper_inversion_check_for_the_white_box_target(models, tmp_path):  # noqa: F811
    stack = models[0]
    save_e4e(tmp_path / "e4e.pt", stack.encoder, stack.generator, stack.latent_avg)
    eraser = {"attack": "eraser", "step": 0.05, "steps": 2, "noise": "const", "checkpoint": str(tmp_path / "e4e.pt")}
    matrix = {
        "name": "check", "seed": 0, "batch_size": 8, "shard_size": 8, "device": "cpu",
        "dataset": {"name": "synthetic", "n": 8, "size": 64},
        "detectors": {"checker": {"detector": "checkerboard_energy"}, "laplace": {"detector": "laplacian_energy"}},
        "sources": ["checker"],
        "attacks": {"walk": eraser, "paper": {**eraser, "inversion_check": "paper"}},
        "metrics": {"mode": "paper", "quality": [], "bootstrap": 50},
    }
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(matrix))
    records = run_matrix(load_matrix(str(path)), out_root=tmp_path / "results", quiet=True).records()
    data = create_dataset("synthetic", n=8, size=64)
    paper = records[records["attack"] == "paper"].set_index(["target", "sample_index"])
    walk = records[records["attack"] == "walk"].set_index(["target", "sample_index"])
    indices = sorted(paper.loc["checker"].index)
    x = torch.stack([data[i].image01.float() for i in indices])
    with torch.no_grad():
        expected = create_detector("checkerboard_energy").p_fake(
            stack.render01(stack.invert(truncate_uint8(x)), "const", size=64)).numpy()
    white = paper.loc["checker"].loc[indices, "p_fake_inversion"].to_numpy()
    assert white == pytest.approx(expected, abs=1e-6)
    assert not (white == walk.loc["checker"].loc[indices, "p_fake_inversion"].to_numpy()).all()
    # transfer targets still grade the stored inversion image
    assert paper.loc["laplace", "p_fake_inversion"].tolist() == walk.loc["laplace", "p_fake_inversion"].tolist()


@pytest.mark.parametrize("start_from_latent_avg", [True, False])
def test_e4e_without_latent_avg_follows_the_official_mean_latent_1000(models, tmp_path, start_from_latent_avg):  # noqa: F811
    from bench.models.checkpoints import read_e4e

    stack, _, _ = models
    path = save_e4e(tmp_path / "e4e.pt", stack.encoder, stack.generator, stack.latent_avg)
    raw = torch.load(path, weights_only=True)
    del raw["latent_avg"]
    raw["opts"]["start_from_latent_avg"] = start_from_latent_avg
    torch.save(raw, path)
    got = read_e4e(path).latent_avg
    if start_from_latent_avg:  # official EncodeDecode.load_latent_avg: decoder.mean_latent(1000)
        with torch.no_grad():
            expected = stack.generator.mean_latent(1000, torch.Generator().manual_seed(0))
        assert torch.equal(got, expected.expand(10, -1))
        assert got.abs().mean() > 0.01
    else:  # the encoder predicts absolute codes
        assert torch.equal(got, torch.zeros(10, 64))

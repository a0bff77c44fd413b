"""Attack health recorded by every attack row (torchattacks loops watched from outside, square,
efaa, statattack, the eraser, the noise control) and shown by the leaderboard and `bench show`."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attack_health import HealthFlag
from bench.registry import create_attack
from bench.report import leaderboard, to_latex, to_markdown
from bench.store import RunStore
from detectors.tiny import TinyCNN
from tests.attack_helpers import (  # noqa: F401 (fixtures)
    FAKE_LABELS,
    DetachedHead,
    OverconfidentHead,
    RoundedHead,
    batches,
    detector,
    fakes,
)
from tests.conftest import run_cli

STEPS = 3
# registry name -> (options, outer steps); every gradient row of the harness
GRADIENT_ROWS = {
    "fgsm": ({}, 1),
    "pgd": ({"steps": STEPS}, STEPS),
    "mifgsm": ({"steps": STEPS}, STEPS),
    "difgsm": ({"steps": STEPS}, STEPS),
    "tifgsm": ({"steps": STEPS}, STEPS),
    "vmifgsm": ({"steps": STEPS, "samples": 2}, STEPS),  # 3 gradients per step
    "sinifgsm": ({"steps": STEPS, "copies": 2}, STEPS),  # 2 gradients per step
    "efaa": ({"steps": STEPS}, STEPS),
    "efaa hybrid": ({"steps": STEPS, "preset": "hybrid"}, STEPS),
}


def _attack(label: str, model: nn.Module, x: torch.Tensor, **extra):
    options, _ = GRADIENT_ROWS.get(label, ({}, 0))
    attack = create_attack(label.split()[0], **{**options, **extra})
    return attack(x, torch.ones(len(x), dtype=torch.long), model, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("label", list(GRADIENT_ROWS))
def test_normal_detector_is_not_flagged_and_counts_outer_steps(label, detector, fakes):  # noqa: F811
    info = _attack(label, detector, fakes).info
    assert info["health_flags"].tolist() == [0] * 8
    assert info["steps_taken"].tolist() == [GRADIENT_ROWS[label][1]] * 8
    assert torch.isfinite(info["final_loss"]).all() and (info["final_loss"] > 0).all()


# SI-NI-FGSM divides its gradient by its mean |gradient| (0/0 = NaN) and then evaluates the NaN
# look-ahead point, which the detector contract rejects: it cannot run on a masked detector at all.
@pytest.mark.parametrize("label", [r for r in GRADIENT_ROWS if r != "sinifgsm"])
def test_zero_gradient_head_flags_every_sample(label, detector, fakes):  # noqa: F811
    info = _attack(label, RoundedHead(detector), fakes).info
    assert info["health_flags"].tolist() == [int(HealthFlag.GRAD_ZERO)] * 8
    assert info["steps_taken"].tolist() == [GRADIENT_ROWS[label][1]] * 8


def test_sinifgsm_on_a_masked_detector_blames_the_attack_not_the_checkpoint(detector, fakes):  # noqa: F811
    from bench.errors import UserError

    with pytest.raises(UserError, match="non-finite image.*gradient masking") as caught:
        _attack("sinifgsm", RoundedHead(detector), fakes)
    assert "checkpoint" not in str(caught.value)


@pytest.mark.parametrize("label", ["pgd", "difgsm", "efaa"])
def test_detached_head_is_flagged_not_a_crash(label, detector, fakes):  # noqa: F811
    out = _attack(label, DetachedHead(detector), fakes)
    assert out.info["health_flags"].tolist() == [int(HealthFlag.GRAD_ZERO)] * 8
    if label == "pgd":  # sign(0) = 0: only the random start moved the image
        assert out.adv01.sub(fakes).abs().max() <= 8 / 255 + 1e-6


@pytest.mark.parametrize("label", ["pgd", "mifgsm", "square", "efaa"])
def test_saturated_detector_flags_its_start(label, detector, fakes):  # noqa: F811
    extra = {"queries": 10} if label == "square" else {}
    flags = _attack(label, OverconfidentHead(detector), fakes, **extra).info["health_flags"]
    assert (flags & HealthFlag.SATURATED_START).bool().all()


class LinearDetector(nn.Module):
    """logits = W x + b: the CE gradient w.r.t. x on label "fake" is p_real (W_real - W_fake), so
    every sign step is sign(W_real - W_fake) and the iterates are known in closed form."""

    def __init__(self, size: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(0.05 * torch.randn(2, 3 * size * size, generator=g), requires_grad=False)
        self.bias = nn.Parameter(torch.tensor([0.0, 1.0]), requires_grad=False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return x01.flatten(1) @ self.weight.T + self.bias


def _fake_ce(model: LinearDetector, x: torch.Tensor) -> torch.Tensor:
    z = model(x)
    return F.softplus(z[:, 0] - z[:, 1])  # -log softmax(z)[fake], written out


def test_final_loss_is_the_ce_where_the_last_step_started_on_a_linear_detector():
    model = LinearDetector()
    x = 0.25 + 0.5 * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    direction = torch.sign(model.weight[0] - model.weight[1]).view(1, 3, 8, 8)
    labels = torch.ones(4, dtype=torch.long)
    pgd = create_attack("pgd", eps=0.05, step=0.01, steps=4, random_start=False)
    out = pgd(x, labels, model)
    # closed form: the k-th iterate is x + 0.01 k sign(W_real - W_fake) (no clip: x in [0.25, 0.75])
    assert torch.allclose(out.adv01, x + 0.04 * direction, atol=1e-6)
    before_last = _fake_ce(model, x + 0.03 * direction)
    assert out.info["final_loss"].tolist() == pytest.approx(before_last.tolist(), rel=1e-5)
    # not the clean loss, not the returned image's: the loss at the point the last step started from
    assert (out.info["final_loss"] > _fake_ce(model, x) + 1e-3).all()
    assert (out.info["final_loss"] < _fake_ce(model, out.adv01) - 1e-3).all()
    fgsm = create_attack("fgsm", eps=0.05)(x, labels, model)
    assert fgsm.info["final_loss"].tolist() == pytest.approx(_fake_ce(model, x).tolist(), rel=1e-5)
    assert fgsm.info["steps_taken"].tolist() == [1] * 4


def test_square_counts_search_iterations_and_its_final_check(detector, fakes):  # noqa: F811
    out = create_attack("square", queries=30)(fakes, FAKE_LABELS, detector, generator=torch.Generator().manual_seed(0))
    info = out.info
    assert info["health_flags"].tolist() == [0] * 8  # no gradient bits: it takes no gradient
    searched = info["queries"] == 30  # never flipped: ran every search iteration
    assert searched.sum() >= 6
    assert info["steps_taken"][searched].tolist() == [27] * int(searched.sum())  # 30 - clean, start, final check
    flipped = ~searched  # torchattacks returns the flipped samples' adversarial images
    with torch.no_grad():
        ce = F.cross_entropy(detector(out.adv01), FAKE_LABELS, reduction="none")
    assert info["final_loss"][flipped].tolist() == pytest.approx(ce[flipped].tolist(), rel=1e-4)
    assert (info["final_loss"] > 0).all()


def test_statattack_flags_parameter_gradients_and_keeps_the_batch_loss(detector, batches):  # noqa: F811
    fakes_, reals = batches
    out = create_attack("statattack", steps=2)(fakes_, FAKE_LABELS, detector, reference=reals)
    assert out.info["health_flags"].tolist() == [0] * 8
    assert out.info["steps_taken"].tolist() == [2] * 8
    loss = out.info["final_loss"]
    assert torch.isfinite(loss).all() and loss.unique().numel() == 1  # one MMD loss per batch


def test_uniform_noise_records_no_steps_and_no_flags(fakes):  # noqa: F811
    info = create_attack("uniform_noise")(fakes, FAKE_LABELS, None, generator=torch.Generator().manual_seed(0)).info
    assert info["steps_taken"].tolist() == [0] * 8 and torch.isnan(info["final_loss"]).all()
    assert "health_flags" not in info  # never calls the detector: n/a, not "healthy"


# -- the eraser: flags on the latent gradient ---------------------------------------------------------
class LeansFake(nn.Module):
    """A small random detector pushed to p_fake ~ 0.95, so the walk has work to do."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.inner(x01) + torch.tensor([0.0, 3.0])


@pytest.fixture(scope="module")
def latent_stack():
    from bench.models.e4e import Encoder4Editing
    from bench.models.latent import LatentStack
    from bench.models.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=1, channel_max=16).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=32, style_dim=32, units=(1, 1, 1, 1),
                        widths=(8, 8, 16, 16)).eval()
    return LatentStack(e, g, g.mean_latent(200, torch.Generator().manual_seed(1)))


def _erase(stack, model: nn.Module, **options):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    eraser = create_attack("eraser", stack=stack, **{"step": 0.02, "steps": STEPS, "noise": "const", **options})
    return eraser(x, torch.ones(4), model, generator=torch.Generator().manual_seed(0))


def test_eraser_walk_is_healthy_and_counts_its_steps(latent_stack):
    model = LeansFake(TinyCNN(width=8, input_size=32, seed=1).eval())
    info = _erase(latent_stack, model).info
    assert info["health_flags"].tolist() == [0] * 4
    assert info["steps_taken"].tolist() == info["steps"].tolist() == [STEPS] * 4
    # the loss (p_fake - target)^2 of the last step's render, target 0
    assert info["final_loss"].tolist() == pytest.approx((info["p_fake_walk"] ** 2).tolist(), rel=1e-6)


@pytest.mark.parametrize("head", [RoundedHead, DetachedHead])
def test_eraser_on_a_zero_gradient_head_flags_every_sample(latent_stack, head):
    model = head(LeansFake(TinyCNN(width=8, input_size=32, seed=1).eval()))
    out = _erase(latent_stack, model)
    assert out.info["health_flags"].tolist() == [int(HealthFlag.GRAD_ZERO)] * 4
    assert torch.equal(out.info["latent_change"], torch.zeros_like(out.info["latent_change"]))  # never moved


# -- views: the leaderboard column and `bench show` ----------------------------------------------------
def _cells(attack: str, source: str, target: str, flags: list[float] | None) -> pd.DataFrame:
    frame = pd.DataFrame({"attack": attack, "source": source, "target": target, "sample_index": range(4)})
    if flags is not None:
        frame["info_health_flags"] = flags
    return frame


def test_leaderboard_counts_flagged_samples_once_per_attack_run():
    records = pd.concat([
        _cells("pgd", "a", "a", [1, 0, 0, 4]), _cells("pgd", "a", "b", [1, 0, 0, 4]),  # b repeats a's flags
        _cells("pgd", "b", "b", [3, 3, 0, 0]), _cells("pgd", "b", "a", [3, 3, 0, 0]),
        _cells("noise", "a", "a", None), _cells("noise", "a", "b", None),
    ], ignore_index=True)
    long = pd.DataFrame([{"attack": attack, "source": s, "target": t, "asr": 50.0, "n": 4, "n_eligible": 4}
                         for attack, s, t in [("pgd", "a", "a"), ("pgd", "a", "b"), ("pgd", "b", "b"),
                                              ("pgd", "b", "a"), ("noise", "a", "a"), ("noise", "a", "b")]])
    board = leaderboard(long, records)
    assert board.loc["pgd", "flagged"] == 4  # 2 of source a + 2 of source b, transfer cells not re-counted
    assert isinstance(board.loc["noise", "flagged"], float) and math.isnan(board.loc["noise", "flagged"])
    rows = {line.split(" & ")[0]: line for line in to_latex(board).splitlines() if " & " in line}
    assert rows["pgd"].endswith(" & 4 \\\\") and rows["noise"].endswith(" & n/a \\\\")  # a count; n/a, not nan
    noise_line = next(line for line in to_markdown(board).splitlines() if line.startswith("| noise |"))
    assert noise_line.endswith("| n/a |")
    older = leaderboard(long, records.drop(columns="info_health_flags"))  # a run from before attack health
    assert older["flagged"].isna().all()


def test_bench_show_warns_about_a_run_with_more_than_five_percent_flagged(tiny_run, tmp_path):
    folder = tmp_path / "tiny" / tiny_run.run_id
    shutil.copytree(tiny_run.root, folder)
    store = RunStore(folder)
    records = store.records()
    assert (records["info_health_flags"] == 0).all()  # the tiny run is healthy
    run = (records["source"] == "checker") & (records["attack"] == "pgd")
    flagged = run & records["sample_index"].isin(sorted(set(records.loc[run, "sample_index"]))[:2])
    records.loc[flagged, "info_health_flags"] = np.where(records.loc[flagged, "sample_index"].rank(method="dense") == 1,
                                                         float(HealthFlag.GRAD_ZERO), float(HealthFlag.SATURATED_START))
    store.write_records(records)
    result = run_cli("show", str(folder))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: attack health")]
    assert warnings == ["warning: attack health: pgd from checker on checker: 2 of 16 samples (12.5 %) flagged "
                        "(grad zero 1, grad nonfinite 0, saturated start 1): the attack's gradient was zero or "
                        "non-finite, or p_fake saturated, so gradient masking may be reported as robustness"]
    pgd_row = next(line for line in result.stdout.splitlines() if line.startswith("│ pgd") and "pixel" in line)
    assert pgd_row.rstrip("│ ").endswith("│ 2")  # the leaderboard's flagged column

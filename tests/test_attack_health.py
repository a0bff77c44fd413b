import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench.attack_health import (
    AttackHealth,
    HealthFlag,
    flag_names,
    health_table,
    health_warnings,
    saturated_at_start,
)
from bench.registry import create_attack
from tests.attack_helpers import (  # noqa: F401 (fixtures)
    FAKE_LABELS,
    DetachedHead,
    OverconfidentHead,
    RoundedHead,
    detector,
    fakes,
)

STEPS = 4


def _walk(model: nn.Module, x: torch.Tensor):
    attack = create_attack("fgsm", variant="official", eps=None, step=1 / 255, steps=STEPS)
    return attack(x, FAKE_LABELS, model, generator=torch.Generator().manual_seed(0))


def test_tracker_sets_bits_per_sample():
    health = AttackHealth(4)
    health.start(torch.tensor([1.0, 0.7, 0.0, 0.3]))
    grad = torch.ones(4, 3, 2, 2)
    grad[0] = 0  # zero gradient while still fake
    grad[1, 0, 0, 0] = float("nan")
    grad[3] = 0  # zero, but the source already calls it real: not masking
    health.step(torch.tensor([0.9, 0.5, 0.1, 0.2]), grad, still_fake=torch.tensor([True, True, True, False]))
    health.step(torch.tensor([0.8, 0.4, 0.05, 0.1]), torch.ones(4, 3, 2, 2),
                active=torch.tensor([True, True, False, True]))
    info = health.info()
    assert info["health_flags"].tolist() == [HealthFlag.SATURATED_START | HealthFlag.GRAD_ZERO,
                                             HealthFlag.GRAD_NONFINITE, HealthFlag.SATURATED_START, 0]
    assert info["steps_taken"].tolist() == [2, 2, 1, 2]
    assert info["final_loss"].tolist() == pytest.approx([0.8, 0.4, 0.1, 0.1])  # sample 2 stopped after step 1
    assert flag_names(5) == ["GRAD_ZERO", "SATURATED_START"]


def test_normal_tiny_cnn_is_not_flagged(detector, fakes):  # noqa: F811
    out = _walk(detector, fakes)
    assert out.info["health_flags"].tolist() == [0] * 8
    assert out.info["steps_taken"].tolist() == [STEPS] * 8
    with torch.no_grad():
        p0 = detector.p_fake(fakes)
    assert (out.info["final_loss"] < p0 ** 2).all()  # MSE(p_fake, 0) went down for every sample
    assert not saturated_at_start(detector, fakes).any()


def test_zero_gradient_head_is_flagged(detector, fakes):  # noqa: F811
    masked = RoundedHead(detector)
    out = _walk(masked, fakes)
    assert torch.equal(out.adv01, fakes)  # sign(0) = 0: the walk never moved
    assert (out.info["health_flags"] & HealthFlag.GRAD_ZERO).bool().all()
    assert not (out.info["health_flags"] & HealthFlag.SATURATED_START).any()


def test_detached_head_is_flagged_not_a_crash(detector, fakes):  # noqa: F811
    out = _walk(DetachedHead(detector), fakes)
    assert torch.equal(out.adv01, fakes)
    assert out.info["health_flags"].tolist() == [int(HealthFlag.GRAD_ZERO)] * 8


def test_saturated_detector_is_flagged(detector, fakes):  # noqa: F811
    saturated = OverconfidentHead(detector)
    assert saturated_at_start(saturated, fakes).all()
    out = _walk(saturated, fakes)
    assert (out.info["health_flags"] & HealthFlag.SATURATED_START).bool().all()


def _records(cell: tuple[str, str, str], flags: list[float]) -> pd.DataFrame:
    source, attack, target = cell
    return pd.DataFrame({"source": source, "attack": attack, "target": target, "info_health_flags": flags})


def test_health_table_counts_and_warns_above_five_percent():
    records = pd.concat([
        _records(("tiny", "fgsm", "tiny"), [1.0, 4.0] + [0.0] * 18),  # 10 % flagged -> warn
        _records(("tiny", "fgsm", "effnet"), [3.0, 1.0] + [0.0] * 38),  # exactly 5 % -> no warning
        _records(("tiny", "noise", "tiny"), [np.nan] * 10),  # attack records no health
    ], ignore_index=True)
    table = health_table(records).set_index(["source", "attack", "target"])
    first = table.loc[("tiny", "fgsm", "tiny")]
    assert (first.n, first.n_flagged, first.frac_flagged, bool(first.warn)) == (20, 2, 0.1, True)
    assert (first.n_grad_zero, first.n_grad_nonfinite, first.n_saturated_start) == (1, 0, 1)
    second = table.loc[("tiny", "fgsm", "effnet")]
    assert (second.n_flagged, second.frac_flagged, bool(second.warn)) == (2, 0.05, False)
    assert (second.n_grad_zero, second.n_grad_nonfinite) == (2, 1)
    third = table.loc[("tiny", "noise", "tiny")]
    assert np.isnan(third.n_flagged) and third.reason == "not_recorded" and not third.warn
    lines = health_warnings(records)
    assert len(lines) == 1
    assert lines[0].startswith("fgsm from tiny on tiny: 2 of 20 samples (10.0 %) flagged "
                               "(grad zero 1, grad nonfinite 0, saturated start 1)")

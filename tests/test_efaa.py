"""EFAA (re-implementation): the DCT is exact, the budget holds in pixel space, the attack works."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import FAKE_LABELS

from attacks._dct import DCT2d, axis_matrix, dct_matrix
from bench.errors import UserError
from bench.registry import create_attack


def test_dct_matrix_matches_hand_values():
    d = dct_matrix(4)
    assert torch.allclose(d[0], torch.full((4,), 0.5, dtype=torch.float64))  # sqrt(1/4)
    assert d[1, 0].item() == pytest.approx(math.sqrt(0.5) * math.cos(math.pi / 8))
    assert d[2, 1].item() == pytest.approx(math.sqrt(0.5) * math.cos(3 * math.pi / 4))
    assert torch.allclose(d @ d.T, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_block_matrix_handles_a_remainder_block():
    m = axis_matrix(19, 8)  # blocks 8, 8, 3
    assert torch.allclose(m @ m.T, torch.eye(19, dtype=torch.float64), atol=1e-12)
    assert torch.equal(m[16:, 16:], dct_matrix(3)) and m[:8, 8:].abs().max() == 0


@pytest.mark.parametrize("block", [8, None], ids=["block8", "global"])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 40, 57)])
def test_dct_round_trips(block, shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    dct = DCT2d(shape[-2], shape[-1], block)
    c = dct.forward(x)
    assert (dct.inverse(c) - x).abs().max() < 1e-6
    assert c.pow(2).sum().item() == pytest.approx(x.pow(2).sum().item(), rel=1e-5)  # orthonormal
    dct64 = DCT2d(shape[-2], shape[-1], block, dtype=torch.float64)
    assert (dct64.inverse(dct64.forward(x.double())) - x.double()).abs().max() < 1e-12


def test_block_dct_of_a_constant_block_is_its_dc_term():
    x = torch.zeros(1, 1, 16, 16)
    x[..., :8, :8] = 0.5
    c = DCT2d(16, 16, 8).forward(x)
    assert c[0, 0, 0, 0].item() == pytest.approx(0.5 * 8)  # DC of an 8x8 block = 8 * mean
    c[0, 0, 0, 0] = 0
    assert c.abs().max() < 1e-6


@pytest.mark.parametrize("preset", ["block", "global", "hybrid"])
def test_efaa_lowers_p_fake_within_pixel_budget(detector, fakes, preset):
    eps = 6 / 255
    attack = create_attack("efaa", preset=preset, eps=eps, step=2 / 255, steps=5)
    out = attack(fakes, FAKE_LABELS, detector)
    assert detector.p_fake(out.adv01).mean() < 0.5 < detector.p_fake(fakes).min()
    linf = (out.adv01 - fakes).abs().flatten(1).amax(1)
    assert torch.all(linf <= eps + 1e-6) and linf.max() > eps - 1e-4  # the budget binds and holds
    assert out.adv01.min() >= 0 and out.adv01.max() <= 1
    assert attack.budget() == {"norm": "linf", "eps": eps, "steps": 5}


def test_saliency_weighting_beats_plain_sign_steps(detector, fakes):
    kwargs = {"eps": 4 / 255, "step": 1 / 255, "steps": 4}
    weighted = create_attack("efaa", saliency=True, **kwargs)(fakes, FAKE_LABELS, detector)
    plain = create_attack("efaa", saliency=False, **kwargs)(fakes, FAKE_LABELS, detector)
    assert detector.p_fake(weighted.adv01).mean() < detector.p_fake(plain.adv01).mean() - 0.1


def test_efaa_is_deterministic(detector, fakes):
    attack = create_attack("efaa", preset="hybrid", steps=2)
    a = attack(fakes, FAKE_LABELS, detector, torch.Generator().manual_seed(1)).adv01
    b = attack(fakes, FAKE_LABELS, detector, torch.Generator().manual_seed(1)).adv01
    assert torch.equal(a, b)


def test_efaa_rejects_unknown_modes():
    with pytest.raises(UserError):
        create_attack("efaa", transform="wavelet")
    with pytest.raises(UserError):
        create_attack("efaa", mode="spatial")


def test_dct_stays_exact_under_bf16_autocast():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dct = DCT2d(32, 32, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (dct.inverse(dct.forward(x)) - x).abs().max() < 1e-6

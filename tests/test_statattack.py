"""StatAttack / MStatAttack: MMD, degradations, budgets, effect on a trained detector, determinism."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from attack_helpers import FAKE_LABELS

from attacks._degradations import adaptive_gaussian_blur, identity_grid, polynomial_basis, warped_bias_field
from attacks._mmd import multi_kernel_mmd
from bench.errors import UserError
from bench.registry import create_attack


def test_mmd_of_a_batch_with_itself_is_zero_and_grows_with_a_mean_shift():
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    assert multi_kernel_mmd(x, x).abs().item() < 1e-6
    values = [multi_kernel_mmd(x, x + shift).item() for shift in (0.1, 0.3, 1.0, 3.0)]
    assert values[0] > 0 and all(a < b for a, b in itertools.pairwise(values))


def test_mmd_matches_a_hand_computation():
    # one point each side at squared distance 4: m = 4, kernels exp(-4/b) for b in m * {1/4..4}
    s, t = torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])
    k = sum(math.exp(-4 / (4 * 2.0 ** i)) for i in range(-2, 3))
    expected = 5 + 5 - 2 * k  # XX + YY - XY - YX, each a 1x1 block
    assert multi_kernel_mmd(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_polynomial_basis_has_78_terms_for_degree_11():
    basis = polynomial_basis(5, 7, 11)
    assert basis.shape == (78, 5, 7)
    assert torch.allclose(basis[0], torch.ones(5, 7))  # x^0 y^0
    assert torch.allclose(basis[1][:, -1], torch.linspace(-1, 1, 5))  # x^0 y^1 at x = 1


def test_zero_flow_bias_field_is_the_polynomial():
    h, w = 16, 24
    basis = polynomial_basis(h, w, 2)
    coef = torch.zeros(1, basis.shape[0])
    coef[0, 3] = 0.7  # x^1 y^0 (t=1, l=0 is the 4th monomial for degree 2)
    field = warped_bias_field(coef, torch.zeros(1, 2, 3, 2), basis, identity_grid(h, w)[None])
    assert torch.allclose(field[0, 0], 0.7 * torch.linspace(-1, 1, w)[None].expand(h, -1), atol=1e-5)


def test_adaptive_blur_limits():
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    sharp = adaptive_gaussian_blur(x, torch.full_like(x, 100.0))  # vanishing width: identity
    assert torch.allclose(sharp, x, atol=1e-6)
    box = adaptive_gaussian_blur(x, torch.zeros_like(x))  # infinite width: 3x3 box mean
    assert box[0, 1, 4, 5].item() == pytest.approx(x[0, 1, 3:6, 4:7].mean().item(), rel=1e-6)


@pytest.mark.parametrize("name", ["statattack", "mstatattack"])
def test_attack_lowers_p_fake_within_its_bounds(detector, batches, name):
    fakes, reals = batches
    attack = create_attack(name)
    assert attack.needs_reference and attack.budget() == {"norm": "linf", "eps": 60 / 255, "steps": 10}
    out = attack(fakes, FAKE_LABELS, detector, reference=reals)
    assert detector.p_fake(out.adv01).mean() < 0.5 < detector.p_fake(fakes).min()
    assert (out.adv01 - fakes).abs().max() <= 60 / 255 + 1e-6
    assert out.adv01.min() >= 0 and out.adv01.max() <= 1
    assert torch.all(out.info["noise_linf"] <= 4 / 255 + 1e-7)
    before = multi_kernel_mmd(detector.features(fakes), detector.features(reals))
    after = multi_kernel_mmd(detector.features(out.adv01), detector.features(reals))
    assert after < 0.5 * before  # it minimises the feature discrepancy, its only attack term


def test_mstatattack_mixes_its_blocks_with_softmax_weights(detector, batches):
    fakes, reals = batches
    out = create_attack("mstatattack", blocks=3, steps=2)(fakes, FAKE_LABELS, detector, reference=reals)
    weights = out.info["mix_weights"]
    assert weights.shape == (8, 3) and torch.allclose(weights.sum(1), torch.ones(8))
    assert not torch.allclose(weights, torch.full_like(weights, 1 / 3))  # the weights were optimised


def test_works_on_non_square_images(detector):
    g = torch.Generator().manual_seed(0)
    x, ref = torch.rand(2, 3, 24, 40, generator=g), torch.rand(2, 3, 24, 40, generator=g)
    out = create_attack("statattack", steps=2)(x, torch.ones(2, dtype=torch.long), detector, reference=ref)
    assert out.adv01.shape == x.shape and (out.adv01 - x).abs().max() <= 60 / 255 + 1e-6


def test_is_deterministic(detector, batches):
    fakes, reals = batches
    attack = create_attack("mstatattack", steps=2)
    a = attack(fakes, FAKE_LABELS, detector, torch.Generator().manual_seed(0), reference=reals).adv01
    b = attack(fakes, FAKE_LABELS, detector, torch.Generator().manual_seed(0), reference=reals).adv01
    assert torch.equal(a, b)


def test_missing_or_mismatched_reference_is_a_user_error(detector, batches):
    fakes, reals = batches
    attack = create_attack("statattack", steps=1)
    with pytest.raises(UserError):
        attack(fakes, FAKE_LABELS, detector)
    with pytest.raises(UserError):
        attack(fakes, FAKE_LABELS, detector, reference=reals[:4])

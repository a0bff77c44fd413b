"""fgsm / pgd / mifgsm: effect on a trained detector, budgets, presets, determinism, parity with
torchattacks called directly, and no trace left on the detector."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from attack_helpers import FAKE_LABELS

from attacks._common import TwoWayLogits
from bench.errors import UserError
from bench.registry import ATTACKS, create_attack


def run(attack, detector, x, seed=0):
    return attack(x, FAKE_LABELS, detector, torch.Generator().manual_seed(seed))


CASES = [("fgsm", {"eps": 6 / 255}), ("pgd", {"eps": 6 / 255, "step": 2 / 255, "steps": 5}),
         ("mifgsm", {"eps": 6 / 255, "step": 2 / 255, "steps": 5})]
PRESETS = [(name, f"{family}-{ds}") for name in ("fgsm", "pgd", "mifgsm")
           for family in ("paper", "official") for ds in ("celebdf", "dfdc", "ffpp")]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_attack_lowers_p_fake_within_budget(detector, fakes, name, kwargs):
    clean = detector.p_fake(fakes)
    assert clean.min() > 0.9
    out = run(create_attack(name, **kwargs), detector, fakes)
    assert detector.p_fake(out.adv01).mean() < 0.5
    linf = (out.adv01 - fakes).abs().flatten(1).amax(1)
    assert torch.all(linf <= kwargs["eps"] + 1e-6)
    assert torch.allclose(out.info["linf"], linf)
    assert out.adv01.min() >= 0 and out.adv01.max() <= 1


@pytest.mark.parametrize("name,preset", PRESETS)
def test_every_preset_lowers_p_fake(detector, fakes, name, preset):
    attack = create_attack(name, preset=preset)
    out = run(attack, detector, fakes)
    clean, adv = detector.p_fake(fakes), detector.p_fake(out.adv01)
    assert torch.all(adv < clean)
    # compare in logit space: the paper's single FGSM step (0.0035 < 1/255 in [0,1] units) moves a
    # p_fake of 0.998 only to ~0.99, which is still a drop of more than one logit
    logit = torch.logit
    assert (logit(clean) - logit(adv)).min() > 1.0
    assert torch.all(out.info["linf"] <= attack.budget()["eps"] + 1e-6)


def test_presets_convert_units_from_minus_one_one():
    # paper: strength 0.007/0.011/0.015 and bound 0.1 in [-1,1] units -> halved in [0,1]
    assert create_attack("fgsm", preset="paper-ffpp").budget() == {"norm": "linf", "eps": 0.0075, "steps": 1}
    paper_pgd = create_attack("pgd", preset="paper-celebdf")
    assert paper_pgd.budget() == {"norm": "linf", "eps": 0.05, "steps": 8}
    assert ATTACKS.resolve_kwargs("pgd", {"preset": "paper-dfdc"})["step"] == pytest.approx(0.0055)
    # official: alpha 2/3/4 /255 and beta 25/255 in [-1,1] units, 8 steps
    official = ATTACKS.resolve_kwargs("pgd", {"preset": "official-celebdf"})
    assert official["step"] == pytest.approx(1 / 255) and official["eps"] == pytest.approx(12.5 / 255)
    assert official["random_start"] is False
    assert create_attack("pgd", preset="official-ffpp").budget()["eps"] == pytest.approx(0.0490196, abs=1e-7)
    # no projection: the reachable bound is steps * step
    assert create_attack("fgsm", preset="official-ffpp").budget()["eps"] == pytest.approx(8 * 2 / 255)
    mi = ATTACKS.resolve_kwargs("mifgsm", {"preset": "official-dfdc"})
    assert mi["decay"] == 0.89 and mi["step"] == pytest.approx(1.5 / 255) and mi["eps"] is None
    assert create_attack("mifgsm", preset="official-dfdc").budget()["eps"] == pytest.approx(12 / 255)


@pytest.mark.parametrize("name,kwargs", [("pgd", {"steps": 3}), ("fgsm", {}), ("mifgsm", {"steps": 3}),
                                         ("pgd", {"preset": "official-celebdf"})])
def test_same_seed_same_result(detector, fakes, name, kwargs):
    attack = create_attack(name, **kwargs)
    assert torch.equal(run(attack, detector, fakes, 7).adv01, run(attack, detector, fakes, 7).adv01)


def test_pgd_random_start_follows_the_generator_and_spares_the_global_rng(detector, fakes):
    attack = create_attack("pgd", eps=8 / 255, step=1 / 255, steps=1)
    before = torch.random.get_rng_state()
    a, b, c = (run(attack, detector, fakes, s).adv01 for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pgd_without_random_start_ignores_the_generator(detector, fakes):
    attack = create_attack("pgd", preset="official-celebdf")
    outs = [run(attack, detector, fakes, s).adv01 for s in (1, 2)]
    outs.append(attack(fakes, FAKE_LABELS, detector).adv01)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_official_fgsm_walks_past_one_step_ball(detector, fakes):
    attack = create_attack("fgsm", preset="official-celebdf")  # 8 steps of 1/255, no projection
    linf = run(attack, detector, fakes).info["linf"]
    assert torch.all(linf > 1 / 255 + 1e-6)  # beyond the ball of one step: there is no projection
    assert torch.all(linf <= 8 / 255 + 1e-6)
    assert linf.max() == pytest.approx(8 / 255, abs=1e-6)  # consistent gradient sign on this detector


def test_official_mifgsm_with_zero_decay_equals_official_fgsm(detector, fakes):
    plain = create_attack("fgsm", variant="official", eps=None, step=1 / 255, steps=4)
    no_momentum = create_attack("mifgsm", variant="official", eps=None, step=1 / 255, steps=4, decay=0.0)
    assert torch.equal(run(plain, detector, fakes).adv01, run(no_momentum, detector, fakes).adv01)


def test_harness_matches_torchattacks_called_directly(detector, fakes):
    assert not detector.training
    direct = torchattacks.MIFGSM(TwoWayLogits(detector), eps=4 / 255, alpha=1 / 255, steps=4, decay=1.0)
    ours = create_attack("mifgsm", eps=4 / 255, step=1 / 255, steps=4, decay=1.0)
    assert torch.equal(run(ours, detector, fakes).adv01, direct(fakes, FAKE_LABELS))
    torch.manual_seed(3)
    direct_pgd = torchattacks.PGD(TwoWayLogits(detector), eps=4 / 255, alpha=1 / 255, steps=2,
                                  random_start=False)(fakes, FAKE_LABELS)
    ours_pgd = create_attack("pgd", eps=4 / 255, step=1 / 255, steps=2, random_start=False)
    assert torch.equal(run(ours_pgd, detector, fakes).adv01, direct_pgd)
    assert not detector.training  # the wrapper mirrors eval(), so torchattacks never calls train()


def test_attack_restores_every_train_flag(detector, fakes):
    detector.body[0].train()  # a submodule deliberately left in train mode
    try:
        run(create_attack("pgd", steps=1), detector, fakes)
        assert detector.body[0].training and not detector.training and not detector.body[2].training
    finally:
        detector.eval()


def test_single_logit_output_is_wrapped_as_zero_z():
    z = torch.tensor([[1.5], [-2.0]])
    wrapped = TwoWayLogits(torch.nn.Identity())(z)
    assert torch.equal(wrapped, torch.tensor([[0.0, 1.5], [0.0, -2.0]]))
    assert torch.allclose(torch.softmax(wrapped, 1)[:, 1], torch.sigmoid(z[:, 0]))


def test_bad_combinations_are_user_errors():
    with pytest.raises(UserError):
        create_attack("fgsm", steps=3)
    with pytest.raises(UserError):
        create_attack("pgd", variant="official")  # official PGD has no random start
    with pytest.raises(UserError):
        create_attack("mifgsm", eps=None)

"""Every pixel-space attack honours the Attack contract: shape, range, budget, determinism."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import held_out_batches

from bench.registry import ATTACKS, create_attack

PIXEL_ATTACKS = ["fgsm", "pgd", "mifgsm", "efaa", "statattack", "mstatattack",
                 "difgsm", "tifgsm", "vmifgsm", "sinifgsm", "square", "uniform_noise"]
# the few-iteration setting of each attack that has no ``steps`` (and how many steps it reports)
FAST = {"square": ({"queries": 12}, 9), "uniform_noise": ({}, 0)}


def configurations():
    for name in PIXEL_ATTACKS:
        yield name, None
        for preset in ATTACKS.get(name).presets:
            yield name, preset


@pytest.mark.parametrize("name,preset", list(configurations()))
def test_contract(detector, name, preset):
    fakes, reals = (t[:4] for t in held_out_batches())
    kwargs = {} if preset is None else {"preset": preset}
    if name == "fgsm" and not (preset or "").startswith("official"):
        expected_steps = 1  # torchattacks FGSM: one step of size eps
    else:
        fast, expected_steps = FAST.get(name, ({"steps": 2}, 2))
        kwargs.update(fast)
    attack = create_attack(name, **kwargs)
    budget = attack.budget()
    assert {"norm", "eps", "steps"} <= set(budget) <= {"norm", "eps", "steps", "queries"}
    assert budget["norm"] == "linf" and budget["steps"] == expected_steps
    reference = reals if attack.needs_reference else None
    labels = torch.ones(4, dtype=torch.long)
    a = attack(fakes, labels, detector, torch.Generator().manual_seed(11), reference=reference)
    b = attack(fakes, labels, detector, torch.Generator().manual_seed(11), reference=reference)
    assert torch.equal(a.adv01, b.adv01)  # deterministic given the generator
    assert a.adv01.shape == fakes.shape and a.adv01.dtype == torch.float32
    assert a.adv01.min() >= 0 and a.adv01.max() <= 1
    assert (a.adv01 - fakes).abs().max() <= budget["eps"] + 1e-6
    assert a.info["linf"].shape == (4,)
    assert not detector.training

"""Pixel-space L-inf baselines ``fgsm``, ``pgd``, ``mifgsm``: torchattacks 3.5.1 by default, the
official Artifact-Eraser loops (``variant="official"``) as presets.

All sizes are in [0,1] units: ``eps`` the L-inf budget, ``step`` the per-step size, ``steps`` the
iteration count. Untargeted cross-entropy on the true label pushes fakes (label 1) toward real.

Unit conversion. The paper and the official code work on images in [-1,1]
(``x_pm1 = 2 * x01 - 1``), so a perturbation of size ``d`` there is ``d / 2`` in [0,1]:

=================  ====================  ========================  ==========================
dataset            paper "eps" [-1,1]    official alpha [-1,1]     [0,1] step (paper / off.)
=================  ====================  ========================  ==========================
celebdf            0.007                 2/255                     0.0035 / 1/255
dfdc               0.011                 3/255                     0.0055 / 1.5/255
ffpp               0.015                 4/255                     0.0075 / 2/255
bound (all)        0.1                   beta = 25/255             0.05   / 12.5/255
=================  ====================  ========================  ==========================

The paper's "eps" values are the official step sizes 2, 3, 4 /255 truncated to three decimals.
The paper gives no step count; both preset families use the official script's 8 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchattacks

from attacks._common import draw_seed, frozen_eval, seeded_global_rng
from attacks._health_watch import WatchedLogits
from attacks._official_pixel import OfficialSignWalk
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector

DATASETS = ("celebdf", "dfdc", "ffpp")
PAPER_STRENGTH_PM1 = {"celebdf": 0.007, "dfdc": 0.011, "ffpp": 0.015}  # [-1,1] units, paper App. B
PAPER_BOUND_PM1 = 0.1
OFFICIAL_ALPHA_PM1 = {"celebdf": 2 / 255, "dfdc": 3 / 255, "ffpp": 4 / 255}  # attack_white_img.py
OFFICIAL_BETA_PM1 = 25 / 255
OFFICIAL_STEPS = 8  # EPOCH=8 in attack_white_img.sh
OFFICIAL_MI_DECAY = 0.89


def pm1_to_unit(size: float) -> float:
    """A perturbation size in [-1,1] image units expressed in [0,1] units."""
    return size / 2


class TorchattacksAttack(Attack):
    """Run a torchattacks 3.5.1 attack under our contract.

    The detector is wrapped to fp32 ``[real, fake]`` logits; every submodule's train/eval flag
    is restored afterwards; attacks that draw from the global RNG (PGD's random start) run on a
    forked global RNG seeded from ``generator``, so the call is a pure function of it. The loop is
    watched from outside for attack health (``attacks/_health_watch.py``); ``gradients_per_step``
    is how many gradients one of its steps takes (VMI: 1 + neighbours, SI-NI: copies).
    """

    def __init__(self, build: Callable[[torch.nn.Module], torchattacks.Attack], eps: float, steps: int,
                 uses_rng: bool = False, gradients_per_step: int = 1):
        self.build, self.eps, self.steps, self.uses_rng = build, float(eps), int(steps), uses_rng
        self.gradients_per_step = int(gradients_per_step)

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        labels = labels.to(device=x01.device, dtype=torch.long)
        model = WatchedLogits(detector, labels, self.gradients_per_step)
        attack = self.build(model)
        # eval() for the whole model, batch-norm and dropout included (torchattacks' default, made
        # explicit); frozen_eval below restores each submodule's own flag afterwards.
        attack.set_model_training_mode(model_training=False, batchnorm_training=False,
                                       dropout_training=False)
        attack.set_device(x01.device)
        with frozen_eval(detector):
            if self.uses_rng:
                with seeded_global_rng(draw_seed(generator), x01.device):
                    adv = attack(x01, labels)
            else:
                adv = attack(x01, labels)
        return AttackOutput(adv, {"linf": (adv - x01).abs().flatten(1).amax(1), "steps": self.steps,
                                  **model.info()})

    def budget(self) -> dict[str, Any]:
        return {"norm": "linf", "eps": self.eps, "steps": self.steps}


def _check_variant(name: str, variant: str) -> None:
    if variant not in ("torchattacks", "official"):
        raise UserError(f"{name}: unknown variant {variant!r}; use 'torchattacks' or 'official'.")


def _presets(paper: Callable[[str], dict], official: Callable[[str], dict]) -> dict[str, dict]:
    presets = {}
    for ds in DATASETS:
        presets[f"paper-{ds}"] = paper(ds)
        presets[f"official-{ds}"] = official(ds)
    return presets


FGSM_PRESETS = _presets(
    # the paper describes FGSM as a single step of size "eps"
    lambda ds: {"eps": pm1_to_unit(PAPER_STRENGTH_PM1[ds])},
    lambda ds: {"variant": "official", "eps": None, "step": pm1_to_unit(OFFICIAL_ALPHA_PM1[ds]),
                "steps": OFFICIAL_STEPS},
)
PGD_PRESETS = _presets(
    lambda ds: {"eps": pm1_to_unit(PAPER_BOUND_PM1), "step": pm1_to_unit(PAPER_STRENGTH_PM1[ds]),
                "steps": OFFICIAL_STEPS, "random_start": True},
    lambda ds: {"variant": "official", "eps": pm1_to_unit(OFFICIAL_BETA_PM1),
                "step": pm1_to_unit(OFFICIAL_ALPHA_PM1[ds]), "steps": OFFICIAL_STEPS, "random_start": False},
)
MIFGSM_PRESETS = _presets(
    lambda ds: {"eps": pm1_to_unit(PAPER_BOUND_PM1), "step": pm1_to_unit(PAPER_STRENGTH_PM1[ds]),
                "steps": OFFICIAL_STEPS, "decay": 1.0},
    lambda ds: {"variant": "official", "eps": None, "step": pm1_to_unit(OFFICIAL_ALPHA_PM1[ds]),
                "steps": OFFICIAL_STEPS, "decay": OFFICIAL_MI_DECAY},
)


@register_attack("fgsm", version="1", threat_model="linf", presets=FGSM_PRESETS)
def fgsm(eps: float | None = 8 / 255, step: float | None = None, steps: int = 1,
         variant: str = "torchattacks") -> Attack:
    """FGSM (torchattacks); variant 'official' = iterative sign steps without projection."""
    _check_variant("fgsm", variant)
    if variant == "official":
        if eps is not None or step is None:
            raise UserError("fgsm variant 'official' has no projection: pass step= and steps=, and "
                            "eps=None (use pgd for a projected walk).")
        return OfficialSignWalk(step=step, steps=steps, eps=None, decay=None, clip_each_step=True)
    if eps is None or steps != 1 or (step is not None and step != eps):
        raise UserError("fgsm (torchattacks) is one step of size eps: pass only eps=, or "
                        "variant='official' for the iterative version.")
    return TorchattacksAttack(lambda model: torchattacks.FGSM(model, eps=eps), eps=eps, steps=1)


@register_attack("pgd", version="1", threat_model="linf", presets=PGD_PRESETS)
def pgd(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10, random_start: bool = True,
        variant: str = "torchattacks") -> Attack:
    """PGD L-inf (torchattacks); variant 'official' = no random start, no range clip in the loop."""
    _check_variant("pgd", variant)
    if variant == "official":
        if random_start:
            raise UserError("pgd variant 'official' has no random start: pass random_start=False.")
        return OfficialSignWalk(step=step, steps=steps, eps=eps, decay=None, clip_each_step=False)
    return TorchattacksAttack(
        lambda model: torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=random_start),
        eps=eps, steps=steps, uses_rng=random_start)


@register_attack("mifgsm", version="1", threat_model="linf", presets=MIFGSM_PRESETS)
def mifgsm(eps: float | None = 8 / 255, step: float = 2 / 255, steps: int = 10, decay: float = 1.0,
           variant: str = "torchattacks") -> Attack:
    """MI-FGSM (torchattacks); variant 'official' = no L1 gradient normalisation, no projection."""
    _check_variant("mifgsm", variant)
    if variant == "official":
        return OfficialSignWalk(step=step, steps=steps, eps=eps, decay=decay, clip_each_step=True)
    if eps is None:
        raise UserError("mifgsm (torchattacks) needs an L-inf budget eps=; eps=None is only for "
                        "variant='official'.")
    return TorchattacksAttack(
        lambda model: torchattacks.MIFGSM(model, eps=eps, alpha=step, steps=steps, decay=decay),
        eps=eps, steps=steps)

"""Preset budgets shared by the baselines added after fgsm/pgd/mifgsm (transfer-enhanced, Square,
noise), so that one preset name means one L-inf budget across every attack of a matrix.

Not a registry module (the leading underscore keeps the registry from importing it).
"""

from __future__ import annotations

from attacks.pixel import (
    DATASETS,
    OFFICIAL_ALPHA_PM1,
    OFFICIAL_BETA_PM1,
    OFFICIAL_STEPS,
    PAPER_BOUND_PM1,
    PAPER_STRENGTH_PM1,
    pm1_to_unit,
)


def step_presets() -> dict[str, dict]:
    """``paper-<ds>`` (eps 0.05, the paper's step, 8 steps) and ``official-<ds>`` (eps 12.5/255,
    the official step, 8 steps): the pgd presets' budgets, without pgd's algorithm switches."""
    presets = {}
    for ds in DATASETS:
        presets[f"paper-{ds}"] = {"eps": pm1_to_unit(PAPER_BOUND_PM1),
                                  "step": pm1_to_unit(PAPER_STRENGTH_PM1[ds]), "steps": OFFICIAL_STEPS}
        presets[f"official-{ds}"] = {"eps": pm1_to_unit(OFFICIAL_BETA_PM1),
                                     "step": pm1_to_unit(OFFICIAL_ALPHA_PM1[ds]), "steps": OFFICIAL_STEPS}
    return presets


def eps_presets() -> dict[str, dict]:
    """The same names with the L-inf bound only, for attacks without steps (Square, noise)."""
    return {name: {"eps": preset["eps"]} for name, preset in step_presets().items()}

"""Which source preset a checkpoint file is closest to: the hint in the one-line error of a
strict load that failed (``detectors.checkpoints.load_into``).

Every source preset of the detector's family is built on the ``meta`` device (shapes only, no
memory, no weights), the file's keys are put through that source's drop/rename rules, and the
preset with the fewest missing + unexpected + mis-shaped keys is named with its first
differing keys.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from detectors.checkpoints import Mismatch, StateDict, apply_source, describe_architecture, fit_state_dict
from detectors.sources import CheckpointSource, sources_of


@lru_cache(maxsize=16)
def _skeleton(family: str, source: str) -> nn.Module:
    """The family's model for ``preset=source``, with meta tensors."""
    from bench.registry import DETECTORS

    with torch.device("meta"):
        return DETECTORS.create(family, preset=source)


def closest_preset(family: str, sd: StateDict) -> tuple[CheckpointSource, Mismatch] | None:
    best: tuple[CheckpointSource, Mismatch] | None = None
    for src in sources_of(family).values():
        try:
            skeleton = _skeleton(family, src.source)
        except Exception:  # a preset that cannot be built here (a missing optional module) is no candidate
            continue
        _, mismatch = fit_state_dict(apply_source(sd, src, skeleton.state_dict()), skeleton)
        if best is None or mismatch.size < best[1].size:
            best = (src, mismatch)
    return best


def strict_failure(model: nn.Module, path: str, sd: StateDict, current: Mismatch) -> str:
    """The one-line error of a strict load that failed. ``sd``: the file's keys as read
    (``module.`` stripped); ``current``: how far they are from ``model``. A source preset of the
    family that fits better is named with its own first differing keys."""
    arch = getattr(model, "arch", None) or {}
    family, chosen = arch.get("name"), arch.get("kwargs", {}).get("source")
    found = closest_preset(family, sd) if family else None
    if found is not None and found[0].source != chosen and found[1].size < current.size:
        src, mismatch = found
        if mismatch.size == 0:
            return (f"checkpoint {path!r} is a {family} file of source {src.source!r}, not of "
                    f"{describe_architecture(model)}: pass preset={src.source!r}")
        return (f"checkpoint {path!r} fits no {family} preset; closest: {src.source!r} ({mismatch.describe()}); "
                f"{describe_architecture(model)} differs in {current.size} keys")
    closest = (f"; the closest {family} preset is the chosen {chosen!r}: the file is not of its format"
               if found is not None and found[0].source == chosen else
               "; pick the detector/kwargs (or source preset) it was trained with")
    return f"checkpoint {path!r} does not fit {describe_architecture(model)}: {current.describe()}{closest}"

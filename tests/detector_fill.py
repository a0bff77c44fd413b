"""The deterministic weight fill of the detector parity fixtures (DETECTORS.md, family "detector"),
and helpers to rebuild an upstream state dict from its layout JSON and read a fixture.

Every tensor depends only on its key, shape and dtype, the set of all keys and one gain G per
fixture, so an upstream checkpoint is rebuilt from the layout alone, without the upstream code.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import torch

from tests.latent_support import shared_reference, tensor_sha256  # noqa: F401 (re-exported for the parity tests)

LAYOUTS = shared_reference() / "layouts"
PARITY = shared_reference() / "parity"

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}
# MAT's constant buffers keep their constructed values (the fill skips them)
_MAT_CONSTANTS = ("attentions.mask", "auxiliary_loss.alpha", "auxiliary_loss.inner_margin",
                  "auxiliary_loss.feature_centers")


def _mat_constant(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key.endswith("attentions.mask"):
        mask = torch.zeros(shape)
        mask[..., 2:-2, 2:-2] = 1
        return mask
    if key.endswith("alpha"):
        return torch.tensor(0.05)
    if key.endswith("inner_margin"):
        return torch.tensor([0.2, -0.8])
    return torch.zeros(shape)


def fill_rule(key: str, keys: set[str]) -> str:
    """The rule that applies to ``key`` (R1, R2, R3, D1, D2), or ``skip``."""
    if key.endswith("num_batches_tracked") or key.endswith(_MAT_CONSTANTS):
        return "skip"
    if key.endswith("running_var"):
        return "R1"
    if key.endswith("running_mean"):
        return "R2"
    if key.endswith(".weight") and key[: -len("weight")] + "running_var" in keys:
        return "R3"
    return "D"


def fill_tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype, keys: set[str], gain: float) -> torch.Tensor:
    rule = fill_rule(key, keys)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)  # num_batches_tracked: the constructor's 0
    if rule == "skip":
        return _mat_constant(key, shape)
    g = torch.Generator()
    g.manual_seed(zlib.crc32(key.encode("utf-8")))
    if rule == "R1":
        return torch.rand(shape, generator=g, dtype=torch.float32) + 0.5
    n = torch.randn(shape, generator=g, dtype=torch.float32)
    if rule == "R2":
        return n * 0.1
    if rule == "R3":
        return 1.0 + 0.1 * n
    if len(shape) >= 2:
        fan_in = math.prod(shape) // shape[0]
        return n / math.sqrt(fan_in) if gain == 1.0 else n * gain / math.sqrt(fan_in)
    return n * 0.1


def load_layout(name: str) -> dict[str, Any]:
    return json.loads((LAYOUTS / f"detector_{name}.json").read_text())


def filled_state_dict(layout: str, gain: float) -> dict[str, torch.Tensor]:
    """The upstream state dict of ``layout`` (e.g. ``official_recce``), filled by the rule."""
    entries = load_layout(layout)["entries"]
    keys = {k for k, _, _ in entries}
    return {k: fill_tensor(k, tuple(shape), _DTYPES[dt], keys, gain) for k, shape, dt in entries}


def fill_probes(fixture: str) -> dict[str, Any]:
    return json.loads((PARITY / f"detector_{fixture}.fill_probes.json").read_text())


def read_fixture(fixture: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata with JSON values decoded) of ``parity/detector_<fixture>.safetensors``."""
    from safetensors import safe_open

    with safe_open(str(PARITY / f"detector_{fixture}.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta: dict[str, Any] = {}
        for k, v in (f.metadata() or {}).items():
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
    return tensors, meta

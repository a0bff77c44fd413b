"""The deterministic weight fill of DETECTORS.md (family "detector") built from a layout JSON
alone, and the upstream checkpoint containers, for the MAT parity tests."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping

import torch

from tests.latent_support import shared_reference, tensor_sha256

# MAT's constant buffers keep the values the upstream constructor gives them
MAT_CONSTANTS = {
    "attentions.mask": lambda: torch.nn.functional.pad(torch.ones(1, 1, 20, 20), (2, 2, 2, 2)),
    "auxiliary_loss.alpha": lambda: torch.tensor(0.05),
    "auxiliary_loss.inner_margin": lambda: torch.tensor([0.2, -0.8]),
    "auxiliary_loss.feature_centers": lambda: torch.zeros(4, 32),
}


def fill_value(key: str, shape: tuple[int, ...], gain: float, keys: set[str]) -> torch.Tensor:
    """One float tensor by rules R1-R3, D1, D2 (one generator per key, seeded by its CRC-32)."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(key.encode("utf-8")))
    if key.endswith("running_var"):  # R1
        return torch.rand(shape, generator=g, dtype=torch.float32) + 0.5
    n = torch.randn(shape, generator=g, dtype=torch.float32)
    if key.endswith("running_mean"):  # R2
        return n * 0.1
    if key.endswith(".weight") and key[: -len("weight")] + "running_var" in keys:  # R3
        return 1.0 + 0.1 * n
    if len(shape) >= 2:  # D1
        fan_in = math.prod(shape) // shape[0]
        return n / math.sqrt(fan_in) if gain == 1.0 else n * gain / math.sqrt(fan_in)
    return n * 0.1  # D2


def filled_state_dict(layout: Mapping, gain: float) -> dict[str, torch.Tensor]:
    """Every key of the layout, in its order: skipped tensors get the constructor's values."""
    keys = {k for k, _, _ in layout["entries"]}
    out = {}
    for key, shape, dtype in layout["entries"]:
        shape = tuple(shape)
        if key in MAT_CONSTANTS:
            out[key] = MAT_CONSTANTS[key]()
        elif key.endswith("num_batches_tracked"):
            # MAT's constructor runs one train-mode forward through the backbone (to read its
            # channel counts), so every backbone BatchNorm has counted one batch
            out[key] = torch.tensor(1 if key.startswith("net.") else 0)
        elif dtype != "float32":
            out[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        else:
            out[key] = fill_value(key, shape, gain, keys)
        assert tuple(out[key].shape) == shape, key
    return out


def probe_mismatches(sd: Mapping[str, torch.Tensor], probes_name: str) -> list[str]:
    """Keys whose SHA-256 differs from the fixture's fill probes (empty = bit-exact)."""
    probes = json.loads((shared_reference() / "parity" / probes_name).read_text())
    assert list(probes) == list(sd), "probe keys differ from the layout's keys"
    return [k for k, p in probes.items() if tensor_sha256(sd[k]) != p["sha256_le_bytes"]]


def official_mat_checkpoint(sd: Mapping[str, torch.Tensor], epoch: int = 20) -> dict:
    """What yoctta/multiple-attention train.py saves: ckpt_<epoch>.pth (state dict of the DDP
    module, so no `module.`)."""
    return {"logs": {"epoch": epoch, "val_acc": 0.9}, "state_dict": dict(sd),
            "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0]}]},
            "scheduler_state": {"last_epoch": epoch}}

"""MAT's part of the parity tests: the official state dict as the fill rule (tests/detector_fill.py)
builds it, plus the two facts that are MAT's own, and the container its training script saves."""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch

from tests.detector_fill import filled_state_dict, tensor_sha256
from tests.latent_support import shared_reference


def filled_mat_state_dict(gain: float) -> dict[str, torch.Tensor]:
    """Every key of the official MAT layout, in its order. MAT's constructor runs one train-mode
    forward through the backbone (to read its channel counts), so every backbone BatchNorm has
    counted one batch: ``num_batches_tracked`` is 1 under ``net.`` and 0 elsewhere."""
    sd = filled_state_dict("official_mat", gain)
    for key in sd:
        if key.endswith("num_batches_tracked") and key.startswith("net."):
            sd[key] = torch.ones_like(sd[key])
    return sd


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

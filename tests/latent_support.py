"""Helpers for the latent-stack tests: locate the shared reference folder and apply the
deterministic weight fill of ``reference/PARITY.md`` ("Deterministic weight fill")."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zlib
from pathlib import Path

import torch
from safetensors import safe_open

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_reference() -> Path:
    """``$ARTIFACT_BENCH_SHARED`` (the shared folder or its ``reference/``), else
    ``../shared/reference`` beside the repo (CI layout) or one level further up.
    Fails loudly: the parity tests must never be skipped silently."""
    candidates = []
    env = os.environ.get("ARTIFACT_BENCH_SHARED")
    if env:
        candidates += [Path(env) / "reference", Path(env)]
    # CI copies shared/ beside the clone; a worktree may sit one level deeper (wt/<name>)
    candidates += [REPO_ROOT.parent / "shared" / "reference", REPO_ROOT.parent.parent / "shared" / "reference"]
    for c in candidates:
        if (c / "layouts").is_dir() and (c / "parity").is_dir():
            return c
    raise AssertionError("shared reference folder not found: set ARTIFACT_BENCH_SHARED to the folder that "
                         "holds reference/layouts and reference/parity (looked in: "
                         + ", ".join(str(c) for c in candidates) + ")")


def load_layout(name: str) -> dict:
    return json.loads((shared_reference() / "layouts" / name).read_text())


def load_fixture(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = shared_reference() / "parity" / name
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = f.metadata() or {}
    return tensors, meta


def fill_rule(key: str, shape: tuple[int, ...], family: str, siblings: set[str]) -> tuple[str, str]:
    """(draw, rule name) for one key; ``draw`` is 'rand' or 'randn'."""
    if key.endswith("running_var"):
        return "rand", "R1"
    if key.endswith("running_mean"):
        return "randn", "R2"
    if key.endswith(".weight") and key[: -len("weight")] + "running_var" in siblings:
        return "randn", "R3"
    if re.search(r"(^|\.)(input_layer\.2|res_layer\.2)\.weight$", key):
        return "randn", "R4"
    if family == "generator":
        return "randn", "G1" if re.match(r"^style\.[0-9]+\.weight$", key) else "G2"
    if re.match(r"^(.*\.)?styles\.[0-9]+\.linear\.weight$", key):
        return "randn", "I1"
    return "randn", "I2" if len(shape) >= 2 else "I3"


def deterministic_fill(model: torch.nn.Module, family: str) -> None:
    """Overwrite every floating state-dict tensor in place, per PARITY.md (rules R1-R4, G1-G2, I1-I3)."""
    sd = model.state_dict()
    keys = set(sd)
    with torch.no_grad():
        for key, t in sd.items():
            if not t.is_floating_point() or key.endswith(("kernel", "num_batches_tracked")):
                continue
            g = torch.Generator()
            g.manual_seed(zlib.crc32(key.encode("utf-8")))
            shape = tuple(t.shape)
            draw, rule = fill_rule(key, shape, family, keys)
            v = (torch.rand if draw == "rand" else torch.randn)(shape, generator=g, dtype=torch.float32)
            if rule == "R1":
                v = v + 0.5
            elif rule == "R2":
                v = v * 0.1
            elif rule == "R3":
                v = 1.0 + 0.1 * v
            elif rule == "R4":
                v = 0.25 + 0.05 * v
            elif rule == "G1":
                v = v * 100.0
            elif rule in ("G2", "I1"):
                v = v * 1.0
            elif rule == "I2":
                v = v / math.sqrt(t.numel() // shape[0])
            elif rule == "I3":
                v = v * 0.1
            t.copy_(v)


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def check_fill_probes(model: torch.nn.Module, probes_name: str) -> list[str]:
    """Keys whose filled value's SHA-256 differs from the probe file (empty list = bit-exact)."""
    probes = json.loads((shared_reference() / "parity" / probes_name).read_text())
    sd = model.state_dict()
    assert list(probes) == list(sd), "probe keys differ from the model's state_dict keys"
    return [k for k, p in probes.items() if tensor_sha256(sd[k]) != p["sha256_le_bytes"]]

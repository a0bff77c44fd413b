"""Every published detector checkpoint format loads strictly and reproduces the upstream forward.

For each parity fixture (DETECTORS.md): rebuild the upstream state dict from its layout with the
deterministic fill (checked against the fixture's SHA-256 probes), wrap it as the publisher's
code saves it, load it with ``create_detector(family, preset=source, checkpoint=FILE)``, run
``classify`` on the fixture's (already normalised) ``x`` and compare the logits and every stored
intermediate (caught by hooks on our modules) within the suggested atol. Sensitivity tests show
that one deliberate change per family (BN eps, padding, align_corners) leaves the tolerance.
MAT's fixtures are covered by its own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.registry import create_detector
from tests.detector_fill import fill_probes, filled_state_dict, read_fixture, tensor_sha256

StateDict = dict[str, torch.Tensor]


def bare(sd: StateDict) -> object:
    return sd


def ddp(sd: StateDict) -> object:  # a file written during DDP training
    return {f"module.{k}": v for k, v in sd.items()}


def recce_trainer_bin(sd: StateDict) -> object:  # VISION-SJTU/RECCE best_model_<step>.bin
    return {"step": 1000, "best_step": 900, "best_metric": 0.9, "eval_metric": "Acc", "model": sd,
            "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 3}}


@dataclass(frozen=True)
class Case:
    fixture: str  # parity/detector_<fixture>.safetensors
    layout: str  # layouts/detector_<layout>.json
    family: str
    source: str
    wrap: Callable[[StateDict], object]
    taps: tuple[tuple[str, str, str], ...]  # (fixture tensor, module path in our detector, "in"/"out")


RECCE_TAPS = (("fusion", "encoder.block8", "in"), ("pooled", "fc", "in"), ("recons", "attention", "in1"))
CASES = {c.fixture: c for c in (
    Case("artifacteraser_efficientnet_b7_256", "artifacteraser_efficientnet_b7", "efficientnet_b7",
         "artifact-eraser", bare, (("blocks_2_out", "net.blocks.2", "out"), ("pooled", "net.classifier", "in"))),
    Case("deepfakebench_efficientnetb4_256", "deepfakebench_efficientnetb4", "efficientnet_b4", "deepfakebench",
         bare, (("block_part1_out", "net.blocks.2", "out"), ("pooled", "net.classifier", "in"))),
    Case("artifacteraser_xception_256", "artifacteraser_xception", "xception", "artifact-eraser", bare,
         (("block3_out", "net.block3", "out"), ("pooled", "net.fc", "in"))),
    Case("deepfakebench_xception_256", "deepfakebench_xception", "xception", "deepfakebench", bare,
         (("block3_out", "net.block3", "out"), ("pooled", "net.fc", "in"))),
    Case("artifacteraser_recce_256", "artifacteraser_recce", "recce", "artifact-eraser", bare, RECCE_TAPS),
    Case("deepfakebench_recce_256", "deepfakebench_recce", "recce", "deepfakebench", ddp, RECCE_TAPS),
    Case("official_recce_299", "official_recce", "recce", "official", recce_trainer_bin, RECCE_TAPS),
)}


@lru_cache(maxsize=1)  # one full-size model alive at a time; tests of one fixture run together
def loaded(fixture: str, tmp: str) -> tuple[nn.Module, dict[str, torch.Tensor], dict]:
    case = CASES[fixture]
    tensors, meta = read_fixture(fixture)
    sd = filled_state_dict(case.layout, float(meta["fill_gain"]))
    probes = fill_probes(fixture)
    for key in list(probes)[::37]:  # a spread of keys over every rule
        assert tensor_sha256(sd[key]) == probes[key]["sha256_le_bytes"], key
    path = Path(tmp) / f"{fixture}.pth"
    torch.save(case.wrap(sd), path)
    del sd
    det = create_detector(case.family, preset=case.source, checkpoint=str(path))  # strict by default
    path.unlink()
    return det, tensors, meta


def run_with_taps(det: nn.Module, case: Case, x: torch.Tensor) -> dict[str, torch.Tensor]:
    caught: dict[str, torch.Tensor] = {}
    handles = []
    for name, path, where in case.taps:
        module = det.get_submodule(path)
        if where == "out":
            handles.append(module.register_forward_hook(lambda m, i, o, n=name: caught.__setitem__(n, o.clone())))
        else:
            index = int(where[2:] or 0)
            handles.append(module.register_forward_pre_hook(lambda m, i, n=name, j=index: caught.__setitem__(n, i[j].clone())))
    try:
        with torch.no_grad():
            logits = det.classify(x)
    finally:
        for h in handles:
            h.remove()
    caught["logits"] = logits
    return caught


def upstream_logits(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Our [real, fake] logits in the upstream's shape: a one-logit head is our [0, z]."""
    assert ours.shape == (ref.shape[0], 2)
    if ref.shape[1] == 1:
        assert torch.equal(ours[:, 0], torch.zeros(ref.shape[0]))
        return ours[:, 1:]
    return ours


def errors_over_atol(det: nn.Module, case: Case, tensors: dict, meta: dict) -> dict[str, float]:
    got = run_with_taps(det, case, tensors["x"])
    got["logits"] = upstream_logits(got["logits"], tensors["logits"])
    out = {}
    for name, value in got.items():
        ref = tensors[name]
        assert value.shape == ref.shape, name
        out[name] = (value - ref).abs().max().item() / meta["suggested_atol"][name]
    return out


def check_parity(fixture: str, det: nn.Module, tensors: dict, meta: dict) -> None:
    ratios = errors_over_atol(det, CASES[fixture], tensors, meta)
    print(fixture, {k: round(v, 4) for k, v in ratios.items()})
    assert set(ratios) == {"logits", *meta["suggested_atol"]}  # every stored intermediate is compared
    assert max(ratios.values()) <= 1.0, ratios


# -- one deliberate change per family leaves the tolerance ------------------------------------
def _set_bn_eps(det: nn.Module, eps: float) -> None:
    for m in det.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps


def _logit_error(det: nn.Module, tensors: dict, meta: dict) -> float:
    with torch.no_grad():
        got = upstream_logits(det.classify(tensors["x"]), tensors["logits"])
    return (got - tensors["logits"]).abs().max().item() / meta["suggested_atol"]["logits"]


def bn_eps_changed(eps: float, kept: float, least: float) -> Callable:
    def check(fixture: str, det: nn.Module, tensors: dict, meta: dict) -> None:
        _set_bn_eps(det, eps)
        try:
            assert _logit_error(det, tensors, meta) > least
        finally:
            _set_bn_eps(det, kept)

    return check


def tf_same_pads_from_real_size(fixture: str, det: nn.Module, tensors: dict, meta: dict) -> None:
    """DeepfakeBench's B4 pads for the nominal 380 px sizes; TF-same from the real sizes is wrong."""
    from detectors.deepfakebench_efficientnet import FixedPadConv2d, static_same_pad

    def from_input(conv: FixedPadConv2d, inputs: tuple[torch.Tensor]) -> None:
        lo, hi = static_same_pad(inputs[0].shape[-1], conv.kernel_size[0], conv.stride[0])
        conv.fixed_pad = (lo, hi, lo, hi)

    convs = [m for m in det.modules() if isinstance(m, FixedPadConv2d)]
    kept = [m.fixed_pad for m in convs]
    handles = [m.register_forward_pre_hook(from_input) for m in convs]
    try:
        assert _logit_error(det, tensors, meta) > 100  # DETECTORS.md: 239 x atol
    finally:
        for conv, pad, handle in zip(convs, kept, handles):
            conv.fixed_pad = pad
            handle.remove()


def align_corners_false(fixture: str, det: nn.Module, tensors: dict, meta: dict) -> None:
    import detectors.recce

    detectors.recce.ALIGN_CORNERS = False
    try:
        assert _logit_error(det, tensors, meta) > 40  # DETECTORS.md: 88-268 x atol
    finally:
        detectors.recce.ALIGN_CORNERS = True


CHECKS: dict[str, Callable] = {
    "parity": check_parity,
    "bn_eps_1e-5": bn_eps_changed(1e-5, 1e-3, 100),  # TF EfficientNets use 1e-3 (DETECTORS.md: 763 x atol)
    "bn_eps_1e-3": bn_eps_changed(1e-3, 1e-5, 30),  # Xception uses PyTorch's 1e-5 (57 / 68 x atol)
    "tf_same_pads": tf_same_pads_from_real_size,
    "align_corners_false": align_corners_false,
}
SENSITIVITY = {"artifacteraser_efficientnet_b7_256": "bn_eps_1e-5", "deepfakebench_efficientnetb4_256": "tf_same_pads",
               "artifacteraser_xception_256": "bn_eps_1e-3", "deepfakebench_xception_256": "bn_eps_1e-3",
               "artifacteraser_recce_256": "align_corners_false", "official_recce_299": "align_corners_false"}
# each fixture's checks run one after the other, so that its model is built once
RUNS = [(f, c) for f in CASES for c in ("parity", SENSITIVITY.get(f)) if c]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("parity"))


@pytest.mark.parametrize(("fixture", "check"), RUNS)
def test_detector_fixture(fixture, check, scratch):
    """``parity``: logits and intermediates within atol; otherwise one deliberate change fails."""
    CHECKS[check](fixture, *loaded(fixture, scratch))

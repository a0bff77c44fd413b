"""MAT parity with the official code (reference/parity/detector_*_mat_*.safetensors): the upstream
layout, filled by the documented rule and saved as each source saves it, loads strictly through
`create_detector("mat", preset=SOURCE, checkpoint=FILE)`, and the logits and every stored
intermediate agree with the upstream forward within the suggested tolerances. Deliberate
deviations (backbone BN eps, TF-same pads from the real size) must break the agreement."""

from __future__ import annotations

import json

import pytest
import torch

import detectors.mat_efficientnet as mat_efficientnet
from bench.errors import UserError
from bench.registry import create_detector
from detectors.deepfakebench_efficientnet import static_same_pad
from tests.latent_support import load_fixture
from tests.mat_fill import filled_mat_state_dict, official_mat_checkpoint, probe_mismatches

# fixture -> (preset, how that source writes its file)
FIXTURES = {
    "detector_artifacteraser_mat_256": ("artifact-eraser", "bare"),  # train_mat.py: model.state_dict()
    "detector_official_mat_380": ("official", "official"),  # train.py: {'logs', 'state_dict', ...}
}
OUTPUTS = ("logits", "attention_maps", "textural_feature_matrix", "ensemble_input")


@pytest.fixture(scope="module")
def upstream_state() -> dict[str, torch.Tensor]:
    _, meta = load_fixture("detector_official_mat_380.safetensors")
    return filled_mat_state_dict(float(meta["fill_gain"]))


@pytest.fixture(scope="module")
def checkpoints(upstream_state, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("mat")
    files = {"bare": upstream_state, "official": official_mat_checkpoint(upstream_state),
             "ddp": {f"module.{k}": v for k, v in upstream_state.items()}}
    for name, obj in files.items():
        torch.save(obj, folder / f"{name}.pth")
    return {name: str(folder / f"{name}.pth") for name in files}


def run_all(det, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = det._forward_parts(x)
        out["logits"] = det.classify(x)
    return out


def worst_over_atol(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], atol: dict[str, float]) -> dict:
    assert all(out[k].shape == ref[k].shape for k in atol), {k: (out[k].shape, ref[k].shape) for k in atol}
    return {k: (out[k] - ref[k]).abs().max().item() / atol[k] for k in atol}


def fixture_data(name: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    tensors, meta = load_fixture(f"{name}.safetensors")
    return tensors, json.loads(meta["suggested_atol"])


def test_fill_rule_reproduces_the_fill_probes(upstream_state):
    assert len(upstream_state) == 770
    for name in FIXTURES:
        assert probe_mismatches(upstream_state, f"{name}.fill_probes.json") == []


@pytest.mark.parametrize("name", FIXTURES)
def test_upstream_checkpoint_gives_upstream_outputs(name, checkpoints, upstream_state):
    preset, container = FIXTURES[name]
    ref, atol = fixture_data(name)
    det = create_detector("mat", preset=preset, checkpoint=checkpoints[container])  # strict by default
    ours = det.state_dict()
    assert list(ours) == list(upstream_state)  # same 770 keys, in the upstream order
    assert all(torch.equal(ours[k], upstream_state[k]) for k in ours)
    assert det.input_size == ref["x"].shape[-1]
    ratios = worst_over_atol(run_all(det, ref["x"]), ref, atol)
    assert set(ratios) == set(OUTPUTS) and max(ratios.values()) <= 1.0, ratios


def test_ddp_prefixed_file_loads_and_a_missing_key_is_refused(checkpoints, upstream_state, tmp_path):
    det = create_detector("mat", preset="official", checkpoint=checkpoints["ddp"])
    assert torch.equal(det.state_dict()["ensemble_classifier_fc.2.weight"],
                       upstream_state["ensemble_classifier_fc.2.weight"])
    partial = {k: v for k, v in upstream_state.items() if not k.startswith("texture_enhance.bn_last.")}
    torch.save(official_mat_checkpoint(partial), tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"missing 5: texture_enhance\.bn_last\.weight"):
        create_detector("mat", preset="official", checkpoint=str(tmp_path / "partial.pth"))


def test_presets_and_static_pads():
    official, eraser = create_detector("mat", preset="official"), create_detector("mat", preset="artifact-eraser")
    assert (official.input_size, eraser.input_size) == (380, 256)
    for det in (official, eraser):
        assert torch.equal(det.norm_mean.flatten(), torch.full((3,), 0.5))
        assert torch.equal(det.norm_std.flatten(), torch.full((3,), 0.5))
        # pads for the nominal 380 px whatever the input: stride-2 3x3 (0, 1), 5x5 (1, 2)
        pads = {(m.kernel_size[0], m.stride[0]): m.same_pad for m in det.net.modules()
                if isinstance(m, mat_efficientnet.StaticSameConv2d)}
        assert pads == {(3, 2): (0, 1, 0, 1), (5, 2): (1, 2, 1, 2), (3, 1): (1, 1, 1, 1),
                        (5, 1): (2, 2, 2, 2), (1, 1): (0, 0, 0, 0)}


# -- sensitivity: each deliberate deviation moves the logits far outside the tolerance ----------
def test_backbone_bn_eps_matters(checkpoints):
    ref, atol = fixture_data("detector_artifacteraser_mat_256")
    det = create_detector("mat", preset="artifact-eraser", checkpoint=checkpoints["bare"])
    for m in det.net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5  # PyTorch's default instead of TF's 1e-3
    assert worst_over_atol(run_all(det, ref["x"]), ref, atol)["logits"] > 50


def test_tf_same_pads_from_the_real_size_do_not_match_at_380_px(checkpoints, monkeypatch):
    def pads_from_real_size(self, x):
        (top, bottom), (left, right) = (static_same_pad(s, k, st) for s, k, st in
                                        zip(x.shape[-2:], self.kernel_size, self.stride, strict=True))
        return torch.nn.Conv2d.forward(self, torch.nn.functional.pad(x, (left, right, top, bottom)))

    ref, atol = fixture_data("detector_official_mat_380")
    det = create_detector("mat", preset="official", checkpoint=checkpoints["official"])
    monkeypatch.setattr(mat_efficientnet.StaticSameConv2d, "forward", pads_from_real_size)
    out = run_all(det, ref["x"])
    assert out["attention_maps"].shape[-2:] == (24, 24)  # TF-same: 380 -> 190 -> 95 -> 48 -> 24
    ratios = {k: (out[k] - ref[k]).abs().max().item() / atol[k] for k in ("logits", "ensemble_input")}
    assert ratios["logits"] > 50, ratios

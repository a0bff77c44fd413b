"""detectors.checkpoints: safe reading, unwrapping, strict errors, and the official layouts
(each written synthetically in that layout, then loaded and checked numerically)."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from bench.errors import UserError
from bench.registry import create_detector
from bench.trust import trusted_checkpoints
from detectors._backbones import XceptionNet, build_efficientnet
from detectors.checkpoints import load_into, load_trained, read_state_dict

X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
TINY_EFFNET = {"channel_multiplier": 0.25, "depth_multiplier": 0.2, "input_size": 64}


def tiny_xception(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_detector("xception", preset="tiny", **kw)


class Marker:
    """Unpickling this object creates a file: the proof that unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": tiny_xception().state_dict(), "payload": Marker(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(UserError, match="--trust-checkpoint"):
        create_detector("xception", preset="tiny", checkpoint=str(evil))
    assert not marker.exists()
    # a keyword cannot opt in (a matrix could carry it); only the CLI flag's switch can
    with pytest.raises(UserError, match="--trust-checkpoint"):
        create_detector("xception", preset="tiny", checkpoint=str(evil), trust_checkpoint=True)
    assert not marker.exists()
    # the payload is real: with the explicit opt-in, unpickling does create the marker
    with trusted_checkpoints():
        create_detector("xception", preset="tiny", checkpoint=str(evil))
    assert marker.exists()


def test_trusted_pickle_with_python_objects_loads(tmp_path):
    det = tiny_xception(seed=1)
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": det.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UserError, match="--trust-checkpoint"):
        create_detector("xception", preset="tiny", checkpoint=str(path))
    with trusted_checkpoints():
        loaded = create_detector("xception", preset="tiny", checkpoint=str(path))
    with torch.no_grad():
        assert torch.equal(loaded(X), det.eval()(X))


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 7},
    lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"net": sd, "optimizer": {"lr": 0.1}},
    lambda sd: {"g_ema": sd, "latent_avg": torch.zeros(512)},
    lambda sd: {f"module.model.{k}": v for k, v in sd.items()},
])
def test_wrapped_and_prefixed_state_dicts_load(wrap, tmp_path):
    det = tiny_xception(seed=2).eval()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(det.state_dict()), path)
    loaded = create_detector("xception", preset="tiny", checkpoint=str(path))
    with torch.no_grad():
        assert torch.equal(loaded(X), det(X))


def test_safetensors_plain_state_dict(tmp_path):
    from safetensors.torch import save_file

    det = tiny_xception(seed=3).eval()
    save_file({k: v.contiguous() for k, v in det.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = create_detector("xception", preset="tiny", checkpoint=str(tmp_path / "w.safetensors"))
    with torch.no_grad():
        assert torch.equal(loaded(X), det(X))


def test_strict_mismatch_lists_keys_and_expected_architecture(tmp_path):
    sd = tiny_xception().state_dict()
    del sd["net.fc.bias"]
    sd["net.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(UserError) as err:
        create_detector("xception", preset="tiny", checkpoint=str(tmp_path / "broken.pt"))
    msg = str(err.value)
    assert "missing 1: net.fc.bias" in msg and "unexpected 1: net.extra.weight" in msg
    assert "xception(width=0.125, middle_blocks=1, input_size=64)" in msg and "\n" not in msg

    torch.save(tiny_xception(width=0.25).state_dict(), tmp_path / "wider.pt")
    wider = r"shape mismatch \d+: net\.conv2\.weight \(16, 8, 3, 3\) vs expected \(8, 8, 3, 3\)"
    with pytest.raises(UserError, match=wider):
        load_into(tiny_xception(width=0.125), tmp_path / "wider.pt")


def test_non_strict_loads_what_fits(tmp_path):
    source = tiny_xception(seed=4)
    sd = source.state_dict()
    del sd["net.fc.weight"]
    torch.save(sd, tmp_path / "partial.pt")
    target = tiny_xception(seed=5)
    fc_before = target.net.fc.weight.clone()
    load_into(target, tmp_path / "partial.pt", strict=False)
    assert torch.equal(target.net.conv1.weight, source.net.conv1.weight)
    assert torch.equal(target.net.fc.weight, fc_before)


def test_missing_file_and_missing_sidecar_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")
    torch.save(tiny_xception().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(UserError, match="sidecar"):
        load_trained(tmp_path / "plain.pt")


# -- official layouts -------------------------------------------------------------------------
class OfficialEfficient(nn.Module):
    """The official "efficient" detector's shape: a timm EfficientNet in ``self.model`` with its
    classifier replaced by ``Linear(F, 2)``."""

    def __init__(self, **scaling):
        super().__init__()
        self.model = build_efficientnet("tf_efficientnet_b7", 1000, **scaling)
        self.model.classifier = nn.Linear(self.model.num_features, 2)

    def forward(self, x):
        return self.model(x)


def test_official_efficientnet_layout(tmp_path):
    torch.manual_seed(6)
    ref = OfficialEfficient(channel_multiplier=0.25, depth_multiplier=0.2).eval()
    torch.save({"state_dict": ref.state_dict(), "epoch": 19}, tmp_path / "efficient.pth")
    det = create_detector("efficientnet_b4", variant="tf_efficientnet_b7_ns",
                          checkpoint=str(tmp_path / "efficient.pth"), **TINY_EFFNET)
    with torch.no_grad():
        assert torch.allclose(det(X), ref((X - 0.5) / 0.5), atol=1e-6)


def test_deepfakebench_style_module_prefix_and_separate_head(tmp_path):
    torch.manual_seed(7)
    trunk = build_efficientnet("efficientnet_b4", 0, channel_multiplier=0.25, depth_multiplier=0.2).eval()
    head = nn.Linear(trunk.num_features, 2)
    sd = {f"module.{k}": v for k, v in trunk.state_dict().items()}
    sd.update({f"module.fc.{k}": v for k, v in head.state_dict().items()})
    torch.save(sd, tmp_path / "dfb.pth")
    det = create_detector("efficientnet_b4", checkpoint=str(tmp_path / "dfb.pth"), **TINY_EFFNET)
    with torch.no_grad():
        assert torch.allclose(det(X), head(trunk((X - 0.5) / 0.5)), atol=1e-6)


def test_cadene_xception_layout_with_2d_pointwise_kernels(tmp_path):
    torch.manual_seed(8)
    ref = XceptionNet(num_classes=2, width=0.125, middle_blocks=1).eval()
    sd = {}
    for k, v in ref.state_dict().items():
        k = k.replace("fc.", "last_linear.")
        sd[k] = v[:, :, 0, 0] if k.endswith("pointwise.weight") else v  # Cadene's Keras port
    torch.save(sd, tmp_path / "xception-cadene.pth")
    det = create_detector("xception", preset="tiny", checkpoint=str(tmp_path / "xception-cadene.pth"))
    with torch.no_grad():
        assert torch.allclose(det(X), ref((X - 0.5) / 0.5), atol=1e-6)


def test_faceforensics_xception_layout(tmp_path):
    """FaceForensics++ TransferModel: ``model.`` wrapper, head ``last_linear = Sequential(Dropout, Linear)``."""
    torch.manual_seed(9)
    ref = XceptionNet(num_classes=2, width=0.125, middle_blocks=1).eval()
    sd = {("model." + k.replace("fc.", "last_linear.1.")): v for k, v in ref.state_dict().items()}
    torch.save(sd, tmp_path / "ffpp.p")
    det = create_detector("xception", preset="tiny", checkpoint=str(tmp_path / "ffpp.p"))
    with torch.no_grad():
        assert torch.allclose(det(X), ref((X - 0.5) / 0.5), atol=1e-6)


def test_recce_head_is_loaded_as_stored(tmp_path):
    """A 2-way fc gives its own [real, fake] logits, a 1-way fc z gives [0, z]: no head rewriting."""
    torch.manual_seed(10)
    two = create_detector("recce", preset="tiny", num_classes=2).eval()
    torch.save({"model": {f"module.{k}": v for k, v in two.state_dict().items()}}, tmp_path / "recce_2way.pth")
    loaded = create_detector("recce", preset="tiny", num_classes=2, checkpoint=str(tmp_path / "recce_2way.pth"))
    assert loaded.fc.weight.shape == (2, two.fc.in_features)
    one = create_detector("recce", preset="tiny").eval()
    with torch.no_grad():
        assert torch.equal(loaded(X), two(X)) and not torch.equal(loaded(X)[:, 0], torch.zeros(2))
        assert torch.equal(one(X)[:, 0], torch.zeros(2))
        assert torch.equal(one(X)[:, 1], one.fc(one.features(X))[:, 0])
    with pytest.raises(UserError, match="fc.weight"):  # a 2-way file does not fit the 1-way model
        create_detector("recce", preset="tiny", checkpoint=str(tmp_path / "recce_2way.pth"))

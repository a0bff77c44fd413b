"""The four detector families: contract, determinism, statelessness, save/load round trips and
full-size architecture facts."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch

from bench.registry import DETECTORS, create_detector
from bench.types import resize_to
from detectors.checkpoints import load_trained, save_trained

FAMILIES = ["efficientnet_b4", "xception", "mat", "recce"]


def small(name: str, **extra) -> torch.nn.Module:
    """Reduced width/depth, default 256 px input: the same code path as the full model."""
    torch.manual_seed(0)
    return create_detector(name, preset="tiny", input_size=256, **extra)


def batch(n: int = 2, size: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_all_families_registered():
    assert set(FAMILIES) <= set(DETECTORS.names())
    assert not {k: v for k, v in DETECTORS.broken.items() if k.startswith("detectors")}


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_features_and_input_gradients(name):
    det = small(name)
    x = batch().requires_grad_(True)
    logits = det(x)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    feats = det.features(x)
    assert feats.ndim == 2 and feats.shape[0] == 2
    det.p_fake(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_eval_is_deterministic_and_owns_resize(name):
    det = small(name)
    x = batch(size=256)
    with torch.no_grad():
        first, second = det(x), det(x)
        assert torch.equal(first, second)
        odd = batch(size=300, seed=3)  # any size: the detector resizes to its input size itself
        assert torch.equal(det(odd), det(resize_to(odd, 256)))


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_round_trip_rebuilds_architecture_from_sidecar(name, tmp_path):
    det = small(name, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    path = save_trained(det, tmp_path / f"{name}.safetensors",
                        {"detector": name, "kwargs": det.arch["kwargs"]})
    x = batch()
    with torch.no_grad():
        want = det(x)
        by_name = create_detector(name, checkpoint=str(path))  # no kwargs: they come from the sidecar
        assert by_name.arch["kwargs"] == json.loads(json.dumps(det.arch["kwargs"]))
        assert torch.equal(by_name(x), want)
        assert torch.equal(load_trained(path)(x), want)
        assert torch.allclose(by_name.norm_std.flatten(), torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize("name", FAMILIES)
def test_cam_target_layers_are_conv_feature_maps(name):
    det = small(name)
    layers = det.cam_target_layers()
    assert layers and all(any(layer is m for m in det.modules()) for layer in layers)
    seen = []
    handle = layers[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        det(batch())
    handle.remove()
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][-1] == 8  # 1/32 of 256 px


def test_normalisation_is_configurable():
    x = batch()
    a, b = small("xception"), small("xception", mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2))
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a.preprocess(x), (x - 0.5) / 0.5)
    assert torch.allclose(b.preprocess(x), (x - 0.4) / 0.2)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def _attribute_snapshot(model: torch.nn.Module) -> dict:
    """Every plain (non-tensor, non-submodule) attribute of every submodule, plus all buffers."""
    plain = {name: {k: copy.deepcopy(v) for k, v in vars(m).items()
                    if not k.startswith("_") and not isinstance(v, (torch.Tensor, torch.nn.Module))}
             for name, m in model.named_modules()}
    return {"plain": plain, "buffers": {k: v.clone() for k, v in model.named_buffers()}}


def test_mat_is_stateless_across_many_calls():
    det = create_detector("mat", preset="tiny", input_size=32)
    x = batch(2, 32)
    before = _attribute_snapshot(det)
    with torch.no_grad():
        first = det(x)
        for _ in range(500):
            det(x)
        last = det(x)
    assert torch.equal(first, last)
    after = _attribute_snapshot(det)
    assert before["plain"] == after["plain"]  # no call counters, no head switching
    assert all(torch.equal(before["buffers"][k], after["buffers"][k]) for k in before["buffers"])


def test_mat_attention_and_texture_shapes():
    det = small("mat")  # tiny: 2 attentions; B4 stages 2 and 5 sit at 1/4 and 1/16 scale
    maps = det.attention_maps(batch())
    assert maps.shape == (2, 2, 16, 16) and (maps >= 0).all()


def test_recce_single_logit_and_reconstruction():
    det = small("recce")
    x = batch()
    with torch.no_grad():
        logits = det(x)
        rec = det.reconstruct(x)
    assert torch.equal(logits[:, 0], torch.zeros(2))  # [0, z]: softmax == sigmoid(z)
    assert torch.allclose(det.p_fake(x), torch.sigmoid(logits[:, 1]))
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    det.train()
    loss, _ = det.training_loss(x, torch.tensor([0, 1]))
    det.rec_weight = 0.0
    loss_cls_only, _ = det.training_loss(x, torch.tensor([0, 1]))
    assert loss > loss_cls_only  # the reconstruction term is part of the objective


# -- full-size architectures: constructed and run once per family ------------------------------
def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_size_efficientnet_b4_matches_timm():
    det = create_detector("efficientnet_b4")
    ref = timm.create_model("efficientnet_b4", pretrained=False, num_classes=2)
    assert [(k, v.shape) for k, v in det.net.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    assert _n_params(det) == 17_552_202
    with torch.no_grad():
        assert det(batch()).shape == (2, 2)


def test_full_size_xception_is_timm_legacy_xception():
    det = create_detector("xception")
    ref = timm.create_model("legacy_xception", pretrained=False, num_classes=2).eval()
    assert [(k, v.shape) for k, v in det.net.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    det.net.load_state_dict(ref.state_dict())
    x = batch()
    with torch.no_grad():
        assert torch.allclose(det(x), ref((x - 0.5) / 0.5), atol=1e-5)


def test_full_size_mat_and_recce_forward():
    for name, n_params in (("mat", 18_826_068), ("recce", 23_781_509)):
        det = create_detector(name)
        assert _n_params(det) == n_params
        with torch.no_grad():
            assert det(batch()).shape == (2, 2)


def test_efficientnet_b7_family_uses_tf_padding_and_2560_features():
    det = create_detector("efficientnet_b7", preset="artifact-eraser")
    assert det.net.classifier.in_features == 2560  # official: timm tf_efficientnet_b7_ns + Linear(2560, 2)
    assert type(det.net.conv_stem).__name__ == "Conv2dSame"
    small_b7 = create_detector("efficientnet_b4", variant="tf_efficientnet_b7_ns", channel_multiplier=0.25,
                               depth_multiplier=0.2)
    assert type(small_b7.net.conv_stem).__name__ == "Conv2dSame"  # same tf_ semantics when reduced


def test_backbone_weights_given_or_cached_never_downloaded(monkeypatch, tmp_path):
    """ImageNet weights (1000-way head) load into the backbone from a path or the local cache;
    with neither, pretrained=True is refused instead of downloading."""
    import detectors._backbones as backbones
    from bench.errors import UserError
    from detectors._backbones import XceptionNet

    torch.manual_seed(5)
    imagenet = XceptionNet(num_classes=1000, width=0.125, middle_blocks=1)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    given = create_detector("xception", preset="tiny", backbone_weights=str(tmp_path / "imagenet.pth"))
    assert torch.equal(given.net.conv1.weight, imagenet.conv1.weight)
    assert given.net.fc.out_features == 2

    monkeypatch.setattr(backbones, "cached_pretrained_file", lambda name: tmp_path / "imagenet.pth")
    cached = create_detector("xception", preset="tiny", pretrained=True)
    assert torch.equal(cached.net.block2.rep[1].pointwise.weight, imagenet.block2.rep[1].pointwise.weight)

    monkeypatch.setattr(backbones, "cached_pretrained_file", lambda name: None)
    with pytest.raises(UserError, match="backbone_weights=PATH"):
        create_detector("xception", preset="tiny", pretrained=True)
    assert backbones.cached_pretrained_file is not None

"""Our StyleGAN2 / e4e / IR-SE50 modules have exactly the official state-dict layouts
(keys, order, shapes, dtypes, persistent buffers) of every JSON in reference/layouts/."""

from __future__ import annotations

import pytest
import torch
from latent_support import load_layout, shared_reference

from bench.models.checkpoints import infer_encoder_config, infer_generator_config, split_prefix
from bench.models.e4e import Encoder4Editing
from bench.models.irse import Backbone
from bench.models.stylegan2 import Generator


def _entries(sd: dict[str, torch.Tensor], prefix: str = "") -> list[list]:
    return [[prefix + k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()]


def _buffers(model: torch.nn.Module, prefix: str = "") -> list[str]:
    params = {n for n, _ in model.named_parameters()}
    return [prefix + k for k in model.state_dict() if k not in params]


def _build(name: str) -> tuple[list[list], list[str]]:
    """Our state_dict entries and buffer keys for one layout file, built on the meta device."""
    with torch.device("meta"):
        if name.startswith("rosinality_generator_"):
            size, cm = name.removeprefix("rosinality_generator_").removesuffix(".json").split("_cm")
            g = Generator(int(size), 512, 8, channel_multiplier=int(cm))
            return _entries(g.state_dict()), _buffers(g)
        if name.startswith("e4e_encoder4editing_irse50_sg"):
            sg = int(name.removeprefix("e4e_encoder4editing_irse50_sg").removesuffix(".json"))
            e = Encoder4Editing(50, "ir_se", n_styles=Generator(sg, 512, 8).n_latent)
            return _entries(e.state_dict()), _buffers(e)
        if name == "irse50_backbone_112.json":
            b = Backbone(112, 50, "ir_se", drop_ratio=0.6)
            return _entries(b.state_dict()), _buffers(b)
        if name == "e4e_psp_checkpoint_sg1024.json":
            e, g = Encoder4Editing(50, "ir_se", n_styles=18), Generator(1024, 512, 8, channel_multiplier=2)
            return (_entries(e.state_dict(), "encoder.") + _entries(g.state_dict(), "decoder."),
                    _buffers(e, "encoder.") + _buffers(g, "decoder."))
    raise AssertionError(f"no builder for layout {name}: add one to this test")


# the latent stack's layouts; the detector_*.json ones are checked by test_detector_parity.py and
# test_mat_parity.py (strict loads of the filled upstream state dicts)
LAYOUTS = sorted(p.name for p in (shared_reference() / "layouts").glob("*.json") if not p.name.startswith("detector_"))
DETECTOR_LAYOUTS = sorted(p.name for p in (shared_reference() / "layouts").glob("detector_*.json"))


def test_every_layout_file_is_covered():
    assert len(LAYOUTS) == 8, LAYOUTS
    from tests.test_detector_parity import CASES

    covered = {f"detector_{case.layout}.json" for case in CASES.values()} | {"detector_official_mat.json"}
    assert set(DETECTOR_LAYOUTS) <= covered, sorted(set(DETECTOR_LAYOUTS) - covered)


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_matches_official(name):
    ref = load_layout(name)
    entries, buffers = _build(name)
    assert entries == ref["entries"]  # keys, order, shapes and dtypes, all at once
    assert len(entries) == ref["num_keys"]
    assert sorted(buffers) == sorted(ref["buffer_keys"])
    assert len(buffers) == ref["buffer_tensors"]


def test_configs_recovered_from_official_e4e_checkpoint_layout():
    """The reader infers both model configs from a full official e4e state dict's shapes."""
    ref = load_layout("e4e_psp_checkpoint_sg1024.json")
    sd = {k: torch.empty(shape, device="meta") for k, shape, _ in ref["entries"]}
    enc_cfg = infer_encoder_config(split_prefix(sd, "encoder."))
    gen_cfg = infer_generator_config(split_prefix(sd, "decoder."))
    assert enc_cfg["n_styles"] == 18 and enc_cfg["units"] == [3, 4, 14, 3]
    assert enc_cfg["widths"] == [64, 128, 256, 512] and enc_cfg["mode"] == "ir_se"
    assert gen_cfg == {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 512}


@pytest.mark.parametrize("name,cm", [("rosinality_generator_256_cm1.json", 1), ("rosinality_generator_256_cm2.json", 2),
                                     ("rosinality_generator_64_cm1.json", 1)])
def test_generator_config_recovered(name, cm):
    ref = load_layout(name)
    sd = {k: torch.empty(shape, device="meta") for k, shape, _ in ref["entries"]}
    cfg = infer_generator_config(sd)
    assert cfg["size"] == ref["constructor"]["size"]
    assert cfg["channel_multiplier"] == cm
    with torch.device("meta"):
        assert _entries(Generator(**cfg).state_dict()) == ref["entries"]


def test_small_demo_models_share_the_code_path():
    g = Generator(64, style_dim=64, n_mlp=2, channel_max=32)
    e = Encoder4Editing(n_styles=g.n_latent, input_size=64, style_dim=64, units=(1, 1, 1, 1), widths=(16, 16, 32, 32))
    assert g.n_latent == 10 and g.num_layers == 9
    assert [k for k in g.state_dict()] == [k for k, _, _ in load_layout("rosinality_generator_64_cm1.json")["entries"]
                                           if not k.startswith("style.") or int(k.split(".")[1]) <= 2]
    codes = e(torch.zeros(2, 3, 64, 64))
    assert codes.shape == (2, 10, 64)

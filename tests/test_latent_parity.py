"""Numerical parity with the official StyleGAN2 / e4e / IR-SE50 code (reference/parity/):
same deterministic weights (fill checked bit-exact by SHA-256 probes), same inputs from the
fixture files, outputs within PARITY.md's tolerance (max|out - ref| <= suggested_atol)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from latent_support import check_fill_probes, deterministic_fill, load_fixture

from bench.models.e4e import Encoder4Editing
from bench.models.fir import Blur, Downsample, Upsample, fused_leaky_relu, make_kernel
from bench.models.irse import Backbone
from bench.models.stylegan2 import Generator


def _atol(meta: dict[str, str], name: str) -> float:
    return float(json.loads(meta["suggested_atol"])[name])


def _close(out: torch.Tensor, ref: torch.Tensor, atol: float, what: str) -> None:
    assert out.shape == ref.shape, what
    err = (out - ref).abs().max().item()
    assert err <= atol, f"{what}: max|out - ref| = {err:.3g} > atol {atol:.3g}"


@pytest.fixture(scope="module")
def gen64():
    tensors, meta = load_fixture("generator_64_cm1.safetensors")
    g = Generator(**json.loads(meta["constructor_kwargs"])).eval()
    deterministic_fill(g, "generator")
    return g, tensors, meta


def test_generator64_fill_is_bit_exact(gen64):
    g, _, _ = gen64
    assert check_fill_probes(g, "generator_64_cm1.fill_probes.json") == []


@pytest.mark.parametrize("fused", [False, True])
def test_generator64_matches_official(gen64, fused):
    g, t, meta = gen64
    g.set_fused_modconv(fused)
    with torch.no_grad():
        _close(g.synthesize(t["w"], noise="const"), t["img"], _atol(meta, "img"), "img")
        style = g.mapping(t["z"])
        _close(style, t["mean_latent_style_of_z"], _atol(meta, "mean_latent_style_of_z"), "style(z)")
        _close(g.synthesize(style, noise="const"), t["img_from_z"], _atol(meta, "img_from_z"), "img_from_z")
    g.set_fused_modconv(False)


def test_batched_form_gradients_match_grouped_form(gen64):
    """The eraser differentiates the batched form (channels_last, sqrt(2) folded into the
    demodulation, in-place noise/bias adds); its d/dw must equal the official grouped form's.
    In float64, so that only a difference in the maths shows (fp32 rounding alone reaches 2e-3
    relative on these deterministic weights)."""
    g, t, _ = gen64
    g = copy.deepcopy(g).double()
    probe = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = {}
    for fused in (True, False):
        g.set_fused_modconv(fused)
        w = t["w"].double().requires_grad_(True)
        grads[fused], = torch.autograd.grad((g.synthesize(w, noise="const") * probe).sum(), w)
    scale = grads[True].abs().max()
    assert scale > 1
    assert (grads[False] - grads[True]).abs().max() <= 1e-10 * scale


def test_generator_noise_buffers_matter(gen64):
    """Sanity for the test itself: const noise is what the fixture used; random noise is not."""
    g, t, meta = gen64
    with torch.no_grad():
        img = g.synthesize(t["w"], noise="random", generator=torch.Generator().manual_seed(0))
    assert (img - t["img"]).abs().max() > 100 * _atol(meta, "img")


def test_generator256_cm2_matches_official():
    t, meta = load_fixture("generator_256_cm2.safetensors")
    g = Generator(**json.loads(meta["constructor_kwargs"])).eval()
    deterministic_fill(g, "generator")
    assert check_fill_probes(g, "generator_256_cm2.fill_probes.json") == []
    with torch.no_grad():
        _close(g.synthesize(t["w"], noise="const"), t["img"], _atol(meta, "img"), "img 256")


def test_e4e_encoder_sg256_matches_official():
    t, meta = load_fixture("e4e_encoder_sg256.safetensors")
    args = json.loads(meta["constructor_args"])
    n_styles = 2 * int(math.log2(args["opts"]["stylegan_size"])) - 2
    assert n_styles == int(meta["style_count"]) == 14
    e = Encoder4Editing(args["num_layers"], args["mode"], n_styles=n_styles).eval()
    deterministic_fill(e, "irse")
    assert check_fill_probes(e, "e4e_encoder_sg256.fill_probes.json") == []
    with torch.no_grad():
        c1, c2, c3 = e.pyramid(t["x"])
        _close(c1, t["body_out_6"], _atol(meta, "body_out_6"), "c1")
        _close(c2, t["body_out_20"], _atol(meta, "body_out_20"), "c2")
        _close(c3, t["body_out_23"], _atol(meta, "body_out_23"), "c3")
        _close(e(t["x"]), t["codes"], _atol(meta, "codes"), "codes")


def test_irse50_backbone_matches_official():
    t, meta = load_fixture("irse50_backbone_112.safetensors")
    b = Backbone(**json.loads(meta["constructor_kwargs"])).eval()
    deterministic_fill(b, "irse")
    assert check_fill_probes(b, "irse50_backbone_112.fill_probes.json") == []
    with torch.no_grad():
        _close(b.embed_prenorm(t["x"]), t["embedding_prenorm"], _atol(meta, "embedding_prenorm"), "prenorm")
        emb = b(t["x"])
    _close(emb, t["embedding"], _atol(meta, "embedding"), "embedding")
    assert torch.allclose(emb.norm(dim=1), torch.ones(2))


def test_fir_blocks_match_official():
    t, meta = load_fixture("fir_blocks.safetensors")
    k = [1, 3, 3, 1]
    up, down = Upsample(k), Downsample(k)
    blur_up11, blur_up21, blur_down = Blur(k, (1, 1), 2), Blur(k, (2, 1), 2), Blur(k, (2, 2))
    assert torch.equal(up.kernel, t["kernel_upsample"]) and torch.equal(down.kernel, t["kernel_downsample"])
    assert torch.equal(blur_up11.kernel, t["kernel_blur_up"]) and torch.equal(blur_down.kernel, t["kernel_blur_down"])
    assert torch.allclose(make_kernel(k).sum(), torch.tensor(1.0))
    x, x17 = t["x"], t["x17"]
    for name, out in [("upsample_f2", up(x)), ("downsample_f2", down(x)), ("blur_up_pad11_on_x", blur_up11(x)),
                      ("blur_up_pad11_on_x17", blur_up11(x17)), ("blur_up_pad21_on_x", blur_up21(x)),
                      ("blur_down_pad22_on_x", blur_down(x)),
                      ("fused_leaky_relu_x_bias", fused_leaky_relu(x, t["bias"]))]:
        _close(out, t[name], _atol(meta, name), name)

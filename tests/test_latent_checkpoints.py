"""Checkpoint readers/writer: e4e round trip, rosinality training files (argparse.Namespace
allow-listed, nothing else), IR-SE50 without num_batches_tracked, latent_avg shapes."""

from __future__ import annotations

import argparse
import datetime

import pytest
import torch

from bench.errors import UserError
from bench.models.checkpoints import (
    normalise_latent_avg,
    read_e4e,
    read_irse50,
    read_rosinality,
    safe_load,
    save_e4e,
)
from bench.models.e4e import Encoder4Editing
from bench.models.irse import Backbone
from bench.models.stylegan2 import Generator
from bench.trust import trusted_checkpoints


def small_pair(seed: int = 0) -> tuple[Encoder4Editing, Generator]:
    torch.manual_seed(seed)
    g = Generator(64, style_dim=64, n_mlp=2, channel_max=32).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=64, style_dim=64, units=(1, 1, 1, 1),
                        widths=(16, 16, 32, 32)).eval()
    return e, g


def test_e4e_round_trip_gives_identical_outputs(tmp_path):
    e, g = small_pair()
    la = torch.randn(64)
    path = save_e4e(tmp_path / "ours.pt", e, g, la, opts={"dataset": "synthetic"})
    raw = torch.load(path, weights_only=True)  # plain containers only: readable by the official code too
    assert set(raw) == {"state_dict", "opts", "latent_avg"}
    assert raw["latent_avg"].shape == (10, 64) and raw["opts"]["dataset"] == "synthetic"
    assert all(k.startswith(("encoder.", "decoder.")) for k in raw["state_dict"])
    back = read_e4e(path)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(back.encoder(x), e(x))
        w = e(x) + la
        assert torch.equal(back.generator.synthesize(w, noise="const"), g.synthesize(w, noise="const"))
    assert torch.equal(back.latent_avg, la.expand(10, -1))
    assert not (tmp_path / "ours.pt.tmp").exists()


@pytest.mark.parametrize("shape", [(10, 64), (64,), (1, 64)])
def test_latent_avg_shapes_are_normalised(shape):
    la = torch.arange(64.0).expand(*shape[:-1], 64) if len(shape) > 1 else torch.arange(64.0)
    out = normalise_latent_avg(la, 10)
    assert out.shape == (10, 64) and torch.equal(out[7], torch.arange(64.0))


def test_latent_avg_with_wrong_rows_is_refused():
    with pytest.raises(UserError, match="rows"):
        normalise_latent_avg(torch.zeros(14, 64), 10)


def test_rosinality_training_file_with_namespace_args_loads_weights_only(tmp_path):
    g = Generator(64, 512, 8, channel_multiplier=1).eval()
    args = argparse.Namespace(size=64, channel_multiplier=1, latent=512, n_mlp=8, lr=0.002)
    ckpt = {"g": g.state_dict(), "d": {"x": torch.zeros(1)}, "g_ema": g.state_dict(), "g_optim": {}, "d_optim": {},
            "args": args, "ada_aug_p": 0.0}
    torch.save(ckpt, tmp_path / "train.pt")
    got = read_rosinality(tmp_path / "train.pt")
    assert got.latent_avg is None and got.args["lr"] == 0.002
    w = torch.randn(1, 512)
    with torch.no_grad():
        assert torch.equal(got.generator.synthesize(w, noise="const"), g.synthesize(w, noise="const"))


def test_rosinality_converted_file_keeps_latent_avg(tmp_path):
    _, g = small_pair()
    torch.save({"g_ema": g.state_dict(), "latent_avg": torch.ones(64)}, tmp_path / "conv.pt")
    got = read_rosinality(tmp_path / "conv.pt")
    assert got.generator.config["channel_max"] == 32 and torch.equal(got.latent_avg, torch.ones(64))


def test_pickle_with_any_other_global_is_refused(tmp_path):
    torch.save({"g_ema": {}, "args": argparse.Namespace(size=64), "when": datetime.date(2024, 1, 1)},
               tmp_path / "evil.pt")
    with pytest.raises(UserError, match="datetime.date"):
        safe_load(tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refusing"):
        read_rosinality(tmp_path / "evil.pt")
    with trusted_checkpoints():
        assert safe_load(tmp_path / "evil.pt")["when"].year == 2024


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_e4e(tmp_path / "nope.pt")


def test_mismatched_generator_names_the_problem(tmp_path):
    e, g = small_pair()
    sd = {f"encoder.{k}": v for k, v in e.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in g.state_dict().items()})
    del sd["decoder.conv1.noise.weight"]
    torch.save({"state_dict": sd, "opts": {"bench_encoder": e.config, "bench_generator": g.config}}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="missing: conv1.noise.weight"):
        read_e4e(tmp_path / "bad.pt")


def test_irse50_reader_tolerates_missing_num_batches_tracked(tmp_path):
    torch.manual_seed(0)
    b = Backbone(112, 50, "ir_se", drop_ratio=0.6).eval()
    sd = {k: v for k, v in b.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 397 - 54
    torch.save(sd, tmp_path / "model_ir_se50.pth")
    got = read_irse50(tmp_path / "model_ir_se50.pth")
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        assert torch.equal(got(x), b(x))

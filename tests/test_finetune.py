"""Encoder fine-tuning, the demo autoencoder trainer and `bench finetune-encoder`."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from bench.cli_options import parse_options
from bench.commands.finetune_encoder import register, run_finetune
from bench.errors import UserError
from bench.finetune import FINETUNE_PRESETS, IdentityLoss, finetune_encoder, load_lpips, train_autoencoder
from bench.models.checkpoints import read_e4e, save_e4e
from bench.models.e4e import Encoder4Editing
from bench.models.irse import Backbone
from bench.models.stylegan2 import Generator
from bench.registry import create_dataset


def small_pair(seed: int = 0) -> tuple[Encoder4Editing, Generator, torch.Tensor]:
    torch.manual_seed(seed)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=16).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=32, style_dim=32, units=(1, 1, 1, 1),
                        widths=(8, 8, 16, 16)).eval()
    return e, g, g.mean_latent(256)


def test_presets_hold_the_reference_weights():
    assert {k: FINETUNE_PRESETS["paper"][k] for k in ("l2", "lpips", "id", "train_generator")} == \
        {"l2": 1.0, "lpips": 0.8, "id": 0.5, "train_generator": False}
    assert {k: FINETUNE_PRESETS["official"][k] for k in ("l2", "lpips", "id", "train_generator")} == \
        {"l2": 1.0, "lpips": 1.0, "id": 0.1, "train_generator": True}


def test_paper_preset_trains_the_encoder_and_freezes_the_generator():
    e, g, la = small_pair()
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    e_before = {k: v.clone() for k, v in e.state_dict().items()}
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    res = finetune_encoder(e, g, la, x, 3, preset="paper", lpips_weight=0, quiet=True)
    assert all(torch.equal(g.state_dict()[k], v) for k, v in g_before.items())
    assert any(not torch.equal(e.state_dict()[k], v) for k, v in e_before.items())
    assert len(res.history) == 3 and set(res.history[0]) == {"l2", "loss"}  # no IR-SE50 given: no ID term


def test_official_preset_trains_both_and_uses_the_id_term():
    e, g, la = small_pair()
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    ds = create_dataset("synthetic", n=6, size=32)
    backbone = Backbone(112, units=(1, 1, 1, 1), widths=(8, 8, 16, 16)).eval()
    res = finetune_encoder(e, g, la, ds, 2, preset="official", lpips_weight=0, irse50=backbone, quiet=True)
    assert any(not torch.equal(g.state_dict()[k], v) for k, v in g_before.items())
    h = res.history[0]
    assert set(h) == {"l2", "id", "loss"}
    assert h["loss"] == pytest.approx(1.0 * h["l2"] + 0.1 * h["id"], rel=1e-5)


def test_identity_loss_is_zero_for_the_same_image_and_positive_otherwise():
    backbone = Backbone(112, units=(1, 1, 1, 1), widths=(8, 8, 16, 16)).eval()
    loss = IdentityLoss(backbone)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(torch.flip(x, [2]), x).item() > 1e-3


def test_missing_alexnet_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth") as err:
        load_lpips()
    assert "\n" not in str(err.value) and str(tmp_path / "hub" / "checkpoints") in str(err.value)
    e, g, la = small_pair()
    with pytest.raises(UserError, match="--lpips-weight 0"):
        finetune_encoder(e, g, la, torch.rand(2, 3, 32, 32), 1, preset="paper", quiet=True)


def test_train_autoencoder_lowers_the_reconstruction_error():
    x = torch.stack([create_dataset("synthetic", n=16, size=32)[i].image01 for i in range(16)])
    res = train_autoencoder(x, 40, generator_config={"style_dim": 32, "channel_max": 16},
                            encoder_config={"widths": (8, 8, 16, 16)}, batch_size=8, quiet=True)
    assert res.generator.size == 32 and res.latent_avg.shape == (res.generator.n_latent, 32)
    first = sum(h["l2"] for h in res.history[:5]) / 5
    last = sum(h["l2"] for h in res.history[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_finetune_command_writes_a_readable_checkpoint(tmp_path):
    e, g, la = small_pair()
    base = save_e4e(tmp_path / "base.pt", e, g, la)
    out = tmp_path / "tuned.pt"
    app = typer.Typer()
    register(app)

    @app.command("noop")  # typer runs a lone command as the app itself; two keep the sub-command name
    def _noop() -> None:
        pass

    result = CliRunner().invoke(app, ["finetune-encoder", "--dataset", "synthetic", "--checkpoint", str(base),
                                      "--preset", "paper", "--steps", "2", "--out", str(out), "--lpips-weight",
                                      "0", "--dataset-opt", "n=4", "--dataset-opt", "size=32", "--quiet"])
    assert result.exit_code == 0, result.output
    tuned = read_e4e(out)
    assert tuned.opts["finetune"]["steps"] == 2 and tuned.opts["finetune"]["dataset_opts"] == {"n": 4, "size": 32}
    base_ckpt = read_e4e(base)
    assert not torch.equal(tuned.encoder.styles[0].linear.weight, base_ckpt.encoder.styles[0].linear.weight)
    assert torch.equal(tuned.generator.input.input, base_ckpt.generator.input.input)


def test_finetune_command_user_errors(tmp_path):
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_options(["n4"], "--dataset-opt")
    with pytest.raises(UserError, match="--preset"):
        run_finetune("synthetic", tmp_path / "x.pt", "fast", 1, tmp_path / "o.pt")
    with pytest.raises(UserError, match="not found"):
        run_finetune("synthetic", tmp_path / "x.pt", "paper", 1, tmp_path / "o.pt", lpips_weight=0)

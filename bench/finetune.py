"""Encoder fine-tuning (paper Sec. 2.2 / App. B.1 and the official finetune script) and, with
the same loop, training the offline demo's small encoder + generator from scratch.

Loss on the reconstruction ``G(E(x) + latent_avg)`` (random StyleGAN noise, as e4e trains):
``l2 * MSE + lpips * LPIPS(alex) + id * (1 - cos(IR-SE50(x), IR-SE50(x_hat)))`` in [-1,1] at the
encoder's input size. Presets: ``paper`` (l2 1.0, lpips 0.8, id 0.5, generator frozen) and
``official`` (l2 1.0, lpips 1.0, id 0.1, generator trained too). Optimiser "ranger" = RAdam +
Lookahead from timm.optim (the Ranger of e4e also centralises gradients; timm has no such
option, so we do without).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UserError
from bench.models.e4e import Encoder4Editing
from bench.models.stylegan2 import Generator
from bench.progress import progress_bar
from bench.types import resize_to

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"

FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    # paper App. B.1: 80000 steps, batch 8, lr 1e-4, decoder frozen, no progressive training
    "paper": {"l2": 1.0, "lpips": 0.8, "id": 0.5, "lr": 1e-4, "batch_size": 8, "train_generator": False,
              "optimizer": "ranger", "steps": 80_000},
    # official finetune script: 1000 steps from an 80k e4e checkpoint, Ranger, trains the generator too
    "official": {"l2": 1.0, "lpips": 1.0, "id": 0.1, "lr": 1e-4, "batch_size": 8, "train_generator": True,
                 "optimizer": "ranger", "steps": 1000},
}

# The offline demo's models: a 64 px generator and a one-unit-per-stage encoder. About 0.4 s per
# batch-8 training step of both on one CPU core; see docs/latent.md.
DEMO_GENERATOR: dict[str, Any] = {"size": 64, "style_dim": 64, "n_mlp": 2, "channel_max": 32}
DEMO_ENCODER: dict[str, Any] = {"input_size": 64, "style_dim": 64, "units": (1, 1, 1, 1), "widths": (16, 16, 32, 32)}


def alexnet_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def load_lpips() -> nn.Module:
    """LPIPS(alex) with its trunk from the torch hub cache; never a random trunk."""
    path = alexnet_path()
    if not path.is_file():
        raise UserError(f"LPIPS needs the AlexNet weights: place {ALEXNET_FILE} at {path} "
                        "(or set TORCH_HOME), or pass --lpips-weight 0")
    import lpips

    return lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)


class IdentityLoss(nn.Module):
    """pSp's ID loss: 1 - cos of IR-SE50 embeddings of the face crop (rows 35:223, cols 32:220
    of a 256 image, scaled for other sizes) pooled to 112."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        s = x.shape[-1] / 256
        crop = x[:, :, round(35 * s):round(223 * s), round(32 * s):round(220 * s)]
        return self.backbone(F.adaptive_avg_pool2d(crop, 112))

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.embed(x)
        return (1 - (self.embed(x_hat) * target).sum(1)).mean()


def make_optimizer(params: Sequence[nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "ranger":
        from timm.optim import Lookahead, RAdam

        return Lookahead(RAdam(params, lr=lr, betas=(0.95, 0.999), eps=1e-5), alpha=0.5, k=6)
    raise UserError(f"optimizer must be 'ranger' or 'adam', got {name!r}")


@dataclass
class TrainResult:
    encoder: Encoder4Editing
    generator: Generator
    latent_avg: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step


def _batch(data: Any, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data[idx]
    return torch.stack([data[int(i)].image01 for i in idx])


def _train(encoder: nn.Module, generator: Generator, latent_avg: torch.Tensor, data: Any, steps: int, *,
           l2: float, lpips_weight: float, id_weight: float, lr: float, batch_size: int, train_generator: bool,
           optimizer: str, lpips_model: nn.Module | None, id_model: nn.Module | None, seed: int,
           device: str | torch.device, quiet: bool, on_step: Callable[[int, dict[str, float]], None] | None,
           ) -> list[dict[str, float]]:
    n = len(data)
    if n == 0:
        raise UserError("the training set is empty")
    dev = torch.device(device)
    encoder.to(dev).train()
    generator.to(dev)
    generator.train(train_generator)
    generator.requires_grad_(train_generator)
    la = latent_avg.to(dev)
    params = list(encoder.parameters()) + (list(generator.parameters()) if train_generator else [])
    opt = make_optimizer(params, optimizer, lr)
    size = getattr(encoder, "input_size", 256)
    rng = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    with progress_bar(quiet) as bar:
        task = bar.add_task("training encoder" + (" + generator" if train_generator else ""), total=steps)
        for step in range(steps):
            idx = torch.randint(n, (min(batch_size, n),), generator=rng)
            x = _batch(data, idx).to(dev).float()
            x = (resize_to(x, size) if x.shape[-1] != size else x) * 2 - 1
            w = encoder(x) + la
            x_hat = resize_to(generator.synthesize(w, noise="random", generator=rng), size)
            terms = {"l2": F.mse_loss(x_hat, x)}
            if lpips_weight:
                terms["lpips"] = lpips_model(x_hat, x).mean()
            if id_weight and id_model is not None:
                terms["id"] = id_model(x_hat, x)
            weights = {"l2": l2, "lpips": lpips_weight, "id": id_weight}
            loss = sum(weights[k] * v for k, v in terms.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            record = {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())}
            history.append(record)
            if on_step:
                on_step(step, record)
            bar.update(task, advance=1, description=f"loss {record['loss']:.4f}")
    if hasattr(opt, "sync_lookahead"):
        opt.sync_lookahead()
    encoder.eval()
    generator.eval().requires_grad_(True)
    return history


def finetune_encoder(encoder: Encoder4Editing, generator: Generator, latent_avg: torch.Tensor, data: Any,
                     steps: int, *, preset: str = "paper", l2: float | None = None, lpips_weight: float | None = None,
                     id_weight: float | None = None, lr: float | None = None, batch_size: int | None = None,
                     train_generator: bool | None = None, optimizer: str | None = None,
                     irse50: nn.Module | str | os.PathLike | None = None, lpips_model: nn.Module | None = None,
                     seed: int = 0, device: str | torch.device = "cpu", quiet: bool = False,
                     on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Fine-tune ``encoder`` (and, with the official preset, ``generator``) in place on ``data``:
    a tensor (N,3,H,W) in [0,1] or an indexable dataset of ``bench.types.Sample``. Explicit
    arguments override the preset. ``irse50``: a Backbone or a path to model_ir_se50.pth; without
    it the ID term is left out. LPIPS is loaded from the torch hub cache unless its weight is 0
    or ``lpips_model`` is given."""
    if preset not in FINETUNE_PRESETS:
        raise UserError(f"unknown fine-tuning preset {preset!r}; use one of {', '.join(FINETUNE_PRESETS)}")
    cfg = dict(FINETUNE_PRESETS[preset])
    given = {"l2": l2, "lpips": lpips_weight, "id": id_weight, "lr": lr, "batch_size": batch_size,
             "train_generator": train_generator, "optimizer": optimizer}
    cfg.update({k: v for k, v in given.items() if v is not None})
    if cfg["lpips"] and lpips_model is None:
        lpips_model = load_lpips()
    id_model = None
    if irse50 is not None and cfg["id"]:
        if not isinstance(irse50, nn.Module):
            from bench.models.checkpoints import read_irse50

            irse50 = read_irse50(irse50)
        id_model = IdentityLoss(irse50)
    dev = torch.device(device)
    for m in (lpips_model, id_model):
        if m is not None:
            m.to(dev)
    history = _train(encoder, generator, latent_avg, data, steps, l2=cfg["l2"], lpips_weight=cfg["lpips"],
                     id_weight=cfg["id"] if id_model is not None else 0.0, lr=cfg["lr"],
                     batch_size=cfg["batch_size"], train_generator=cfg["train_generator"],
                     optimizer=cfg["optimizer"], lpips_model=lpips_model, id_model=id_model, seed=seed,
                     device=dev, quiet=quiet, on_step=on_step)
    return TrainResult(encoder, generator, latent_avg, history)


def train_autoencoder(images01: Any, steps: int, *, generator_config: dict[str, Any] | None = None,
                      encoder_config: dict[str, Any] | None = None, lr: float = 2e-3, batch_size: int = 8,
                      lpips_weight: float = 0.0, lpips_model: nn.Module | None = None, seed: int = 0,
                      device: str | torch.device = "cpu", quiet: bool = False,
                      on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train a small encoder + generator pair from scratch as an autoencoder (the offline demo's
    latent stack). ``images01``: tensor (N,3,S,S) in [0,1] or a dataset of Samples; the models
    default to DEMO_GENERATOR / DEMO_ENCODER, with the generator's size taken from the images.
    Returns the trained pair and ``latent_avg`` (n_latent, style_dim) = mean of the mapping
    network's output (fixed during training)."""
    torch.manual_seed(seed)
    first = images01[0] if isinstance(images01, torch.Tensor) else images01[0].image01
    gcfg = {**DEMO_GENERATOR, "size": int(first.shape[-1]), **(generator_config or {})}
    generator = Generator(**gcfg)
    ecfg = {**DEMO_ENCODER, "input_size": gcfg["size"], "style_dim": gcfg["style_dim"], **(encoder_config or {})}
    encoder = Encoder4Editing(n_styles=generator.n_latent, **ecfg)
    latent_avg = generator.mean_latent(4096, torch.Generator().manual_seed(seed)).expand(generator.n_latent, -1)
    latent_avg = latent_avg.clone()
    if lpips_weight and lpips_model is None:
        lpips_model = load_lpips()
    history = _train(encoder, generator, latent_avg, images01, steps, l2=1.0, lpips_weight=lpips_weight,
                     id_weight=0.0, lr=lr, batch_size=batch_size, train_generator=True, optimizer="adam",
                     lpips_model=lpips_model, id_model=None, seed=seed, device=device, quiet=quiet,
                     on_step=on_step)
    return TrainResult(encoder, generator, latent_avg, history)

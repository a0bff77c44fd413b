"""Readers and a writer for the latent stack's checkpoint formats (REFERENCE.md sec. 7).

- rosinality StyleGAN2 ``.pt``: ``{g_ema, latent_avg}`` (converted) or a training file
  ``{g, d, g_ema, g_optim, d_optim, args, ...}`` whose ``args`` is an ``argparse.Namespace``.
- e4e ``.pt``: ``{state_dict (encoder.* / decoder.*), opts, latent_avg}``; latent_avg of shape
  [n_latent, 512], [512] or [1, 512].
- IR-SE50 ``model_ir_se50.pth``: a bare Backbone state dict (old files lack num_batches_tracked).

Everything loads with ``torch.load(weights_only=True)``; the only class allowed beyond plain
containers and tensors is ``argparse.Namespace`` (rosinality's ``args``). Files that need any
other global are refused unless the command was given ``--trust-checkpoint`` (``bench.trust``).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import trust
from bench.checkpoint_load import first_line, safe_torch_load
from bench.errors import UserError
from bench.models.e4e import Encoder4Editing
from bench.models.irse import Backbone
from bench.models.stylegan2 import Generator

BENCH_FORMAT = "artifact-bench-e4e-v1"  # marks files written by save_e4e (their opts carry our configs)


def safe_load(path: str | os.PathLike, trust_checkpoint: bool = False) -> Any:
    """``torch.load`` with weights_only=True, allow-listing exactly ``argparse.Namespace``; a full
    unpickle only under the command's ``--trust-checkpoint`` (``bench.trust``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (check the path)")
    trust.refuse_requested_trust(trust_checkpoint)
    return safe_torch_load(path, [argparse.Namespace])


def _config_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    return dict(obj)


# -- StyleGAN2 ----------------------------------------------------------------------------------
def infer_generator_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Recover Generator(...) arguments from a state dict's shapes."""
    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    style_dim = sd["style.1.weight"].shape[1]
    n_rgbs = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    size = 2 ** (n_rgbs + 2)
    channel_max = sd["input.input"].shape[1]
    cm = 2  # sizes below 64 do not depend on the multiplier
    if size >= 64:
        # the finest resolution has 16384/size * cm channels unless capped at channel_max
        c_last, base = sd[f"to_rgbs.{n_rgbs - 1}.conv.weight"].shape[2], 16384 // size
        cm = max(1, c_last // base) if c_last < channel_max else max(1, -(-channel_max // base))
    return {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": cm, "channel_max": channel_max}


def build_generator(sd: dict[str, torch.Tensor], config: dict[str, Any] | None = None) -> Generator:
    cfg = dict(config or infer_generator_config(sd))
    g = Generator(**cfg)
    load_strict(g, sd, "generator")
    return g.eval()


def load_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str, optional: tuple[str, ...] = ()) -> None:
    """Strict load with one clear line on a mismatch; keys ending in ``optional`` may be absent."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith(optional)]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(f"{n}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}"
                           for n, v in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if v)
        raise UserError(f"{what} checkpoint does not match the model ({detail}); check the model size options")
    model.load_state_dict({k: v for k, v in sd.items()}, strict=False)


@dataclass
class RosinalityCheckpoint:
    generator: Generator
    latent_avg: torch.Tensor | None  # (style_dim,) when stored
    args: dict[str, Any]


def read_rosinality(path: str | os.PathLike, use: str = "g_ema", trust_checkpoint: bool = False,
                    **generator_options: Any) -> RosinalityCheckpoint:
    """Load a rosinality ``.pt`` (converted or training file). ``use`` picks g_ema (default) or g."""
    ckpt = safe_load(path, trust_checkpoint)
    if not isinstance(ckpt, dict) or use not in ckpt:
        raise UserError(f"{path} is not a rosinality StyleGAN2 checkpoint (no {use!r} entry)")
    args = _config_dict(ckpt.get("args"))
    sd = ckpt[use]
    cfg = infer_generator_config(sd)
    for key in ("size", "channel_multiplier"):
        if key in args:
            cfg[key] = int(args[key])
    cfg.update(generator_options)
    la = ckpt.get("latent_avg")
    return RosinalityCheckpoint(build_generator(sd, cfg), None if la is None else la.reshape(-1).float(), args)


# -- e4e ----------------------------------------------------------------------------------------
def split_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def infer_encoder_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Official-style encoders: stages are runs of equal unit depth (64/128/256/512)."""
    n_styles = sum(1 for k in sd if re.fullmatch(r"styles\.\d+\.linear\.weight", k))
    depths = []
    i = 0
    while f"body.{i}.res_layer.1.weight" in sd:
        depths.append(sd[f"body.{i}.res_layer.1.weight"].shape[0])
        i += 1
    widths, units = [], []
    for d in depths:
        if widths and widths[-1] == d:
            units[-1] += 1
        else:
            widths.append(d)
            units.append(1)
    mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir"
    style_dim = sd["styles.0.linear.weight"].shape[0]
    return {"num_layers": 50, "mode": mode, "n_styles": n_styles, "input_size": 256, "style_dim": style_dim,
                "units": units, "widths": widths}


def normalise_latent_avg(latent_avg: torch.Tensor | None, n_latent: int) -> torch.Tensor | None:
    """[n_latent, D], [D] or [1, D] -> (n_latent, D)."""
    if latent_avg is None:
        return None
    la = latent_avg.float()
    if la.ndim == 1:
        la = la[None]
    la = la.reshape(-1, la.shape[-1])
    if la.shape[0] == 1:
        la = la.expand(n_latent, -1)
    if la.shape[0] != n_latent:
        raise UserError(f"latent_avg has {la.shape[0]} rows but the generator has {n_latent}; wrong checkpoint")
    return la.clone()


@dataclass
class E4ECheckpoint:
    encoder: Encoder4Editing
    generator: Generator
    latent_avg: torch.Tensor  # (n_latent, style_dim)
    opts: dict[str, Any]


# The official EncodeDecode.load_latent_avg: a file without latent_avg, trained with
# start_from_latent_avg, gets decoder.mean_latent(1000) (we seed the draw, the official does not)
OFFICIAL_MEAN_LATENT_SAMPLES = 1000


def read_e4e(path: str | os.PathLike, trust_checkpoint: bool = False,
             latent_avg_samples: int = OFFICIAL_MEAN_LATENT_SAMPLES) -> E4ECheckpoint:
    """Load an e4e/pSp ``.pt`` (official or written by :func:`save_e4e`)."""
    ckpt = safe_load(path, trust_checkpoint)
    if not isinstance(ckpt, dict) or not _is_state_dict(ckpt.get("state_dict")):
        raise UserError(f"{path} is not an e4e checkpoint (no 'state_dict' entry of tensors)")
    try:
        return _e4e_from(ckpt, path, latent_avg_samples)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UserError(f"{path} is not an e4e checkpoint this code can read ({type(exc).__name__}: "
                        f"{first_line(exc)})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _e4e_from(ckpt: dict[str, Any], path: str | os.PathLike, latent_avg_samples: int) -> E4ECheckpoint:
    opts = _config_dict(ckpt.get("opts"))
    sd = ckpt["state_dict"]
    enc_sd, dec_sd = split_prefix(sd, "encoder."), split_prefix(sd, "decoder.")
    if not enc_sd or not dec_sd:
        raise UserError(f"{path}: state_dict lacks encoder.* or decoder.* keys; not an e4e checkpoint")
    enc_cfg = opts.get("bench_encoder") or infer_encoder_config(enc_sd)
    gen_cfg = opts.get("bench_generator") or infer_generator_config(dec_sd)
    if "bench_generator" not in opts and "stylegan_size" in opts:
        gen_cfg["size"] = int(opts["stylegan_size"])
    encoder = Encoder4Editing(**enc_cfg)
    load_strict(encoder, enc_sd, f"{path} encoder", optional=("num_batches_tracked",))
    generator = build_generator(dec_sd, gen_cfg)
    la = normalise_latent_avg(ckpt.get("latent_avg"), generator.n_latent)
    if la is None and opts.get("start_from_latent_avg", True):
        with torch.no_grad():
            mean = generator.mean_latent(latent_avg_samples, torch.Generator().manual_seed(0))
        la = mean.expand(generator.n_latent, -1).clone()
    elif la is None:  # trained without start_from_latent_avg: the encoder predicts absolute codes
        la = torch.zeros(generator.n_latent, generator.style_dim)
    return E4ECheckpoint(encoder.eval(), generator, la, opts)


def save_e4e(path: str | os.PathLike, encoder: Encoder4Editing, generator: Generator, latent_avg: torch.Tensor,
             opts: dict[str, Any] | None = None) -> Path:
    """Write an e4e-format ``.pt`` that the official code and :func:`read_e4e` both read: our
    configs travel in ``opts`` (plain dicts), ``latent_avg`` as [n_latent, style_dim]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {f"encoder.{k}": v.detach().cpu() for k, v in encoder.state_dict().items()}
    sd.update({f"decoder.{k}": v.detach().cpu() for k, v in generator.state_dict().items()})
    full_opts = dict(opts or {})
    full_opts.update(format=BENCH_FORMAT, encoder_type="Encoder4Editing", stylegan_size=generator.size,
                     start_from_latent_avg=True, bench_encoder=dict(encoder.config),
                     bench_generator=dict(generator.config))
    la = normalise_latent_avg(latent_avg.detach().cpu(), generator.n_latent)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": sd, "opts": full_opts, "latent_avg": la}, tmp)
    os.replace(tmp, path)  # no partial file on failure
    return path


# -- IR-SE50 ------------------------------------------------------------------------------------
def read_irse50(path: str | os.PathLike, trust_checkpoint: bool = False) -> Backbone:
    """``model_ir_se50.pth`` -> Backbone(112, 50, 'ir_se', drop_ratio=0.6) in eval mode."""
    sd = safe_load(path, trust_checkpoint)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not _is_state_dict(sd):
        raise UserError(f"{path} is not an IR-SE50 checkpoint (expected a state dict of tensors, as pSp's "
                        "model_ir_se50.pth)")
    sd = {str(k).removeprefix("module."): v for k, v in sd.items()}
    model = Backbone(112, 50, "ir_se", drop_ratio=0.6)
    load_strict(model, sd, str(path), optional=("num_batches_tracked",))
    return model.eval()

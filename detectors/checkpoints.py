"""Reading detector checkpoints safely and fitting them to our module layouts.

Every file goes through ``torch.load(..., weights_only=True)`` or safetensors. A file that needs
arbitrary unpickling code is refused unless the command was given ``--trust-checkpoint``
(``bench.trust``). The state dict is unwrapped (``state_dict``, ``model``, ``net``,
``g_ema``, ...), DDP ``module.`` prefixes are dropped, and the keys are fitted to the model by
trying (a) the keys as they are and with shared wrapper prefixes (``model.``, ``net.``...) peeled
off, times (b) the identity and each layout adapter the detector declares in
``checkpoint_adapters()``. Loading is strict by default: a mismatch raises one ``UserError``
listing the first offending keys and the architecture that was expected.

Detectors trained by ``bench train-detector`` are stored as ``NAME.safetensors`` plus a sidecar
``NAME.json`` holding the registry name and architecture kwargs; ``load_trained`` rebuilds the
detector from the sidecar alone, and the family factories read it through ``build_detector``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Container, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import trust
from bench.checkpoint_load import safe_torch_load, sniff
from bench.errors import UserError
from detectors.sources import CheckpointSource, get_source

StateDict = dict[str, torch.Tensor]
Adapter = Callable[[StateDict], StateDict]

# Keys under which training scripts nest the weights, in the order we look for them.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "g_ema", "module",
                "weights", "params", "ema")
# Attribute names that wrapper modules put in front of every key (peeled off when all keys share one).
WRAPPER_PREFIXES = ("module", "model", "net", "network", "detector", "base_model")
SIDECAR_FORMAT = "artifact-bench-detector/1"
_SHOWN_KEYS = 5


# -- reading -----------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike, trust_checkpoint: bool = False,
                    container: Iterable[str] = ()) -> StateDict:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict (``module.`` prefixes dropped).
    ``container`` names the wrapper keys a source nests its state dict under (outermost first);
    they are followed where present, then the usual wrapper search takes over."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; check the path")
    if path.suffix == ".safetensors" or sniff(path) == "safetensors":  # by content, whatever its name
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise UserError(f"checkpoint {str(path)!r} is not a readable safetensors file ({exc})") from exc
    else:
        obj = _torch_load(path, trust_checkpoint)
    for key in container:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    state = unwrap_state_dict(obj, path)
    return {strip_module_prefix(k): v for k, v in state.items()}


def _torch_load(path: Path, trust_checkpoint: bool) -> Any:
    # the decision to run a file's code comes only from the command's --trust-checkpoint flag
    trust.refuse_requested_trust(trust_checkpoint)
    return safe_torch_load(path)


def unwrap_state_dict(obj: Any, path: str | os.PathLike = "<memory>") -> StateDict:
    """Descend through wrapper dicts until a mapping of tensors is found."""
    for _ in range(4):  # wrappers nest a few levels at most ({"model": {"state_dict": ...}})
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if not isinstance(obj, Mapping):
            break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), (Mapping, nn.Module))), None)
        if inner is None or (tensors and len(tensors) > len(obj) // 2):
            if tensors:
                return {str(k): v for k, v in tensors.items()}
            break
        obj = inner
    raise UserError(f"checkpoint {str(path)!r} holds no state dict (looked under "
                    f"{', '.join(WRAPPER_KEYS)}); save model.state_dict()")


def strip_module_prefix(key: str) -> str:
    while key.startswith("module."):  # DDP / DataParallel wrappers, possibly nested
        key = key[len("module."):]
    return key


# -- fitting keys to a model -------------------------------------------------------------------
def rename_prefix(old: str, new: str) -> Adapter:
    """Adapter: keys starting with ``old`` start with ``new`` instead."""

    def adapt(sd: StateDict) -> StateDict:
        return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}

    return adapt


def add_prefix(prefix: str) -> Adapter:
    def adapt(sd: StateDict) -> StateDict:
        return {prefix + k: v for k, v in sd.items()}

    return adapt


def chain(*adapters: Adapter) -> Adapter:
    def adapt(sd: StateDict) -> StateDict:
        for a in adapters:
            sd = a(sd)
        return sd

    return adapt


def _peeled(sd: StateDict) -> Iterable[StateDict]:
    """The state dict, then with each shared wrapper prefix peeled off in turn."""
    yield sd
    while sd:
        heads = {k.split(".", 1)[0] for k in sd}
        if len(heads) != 1 or heads.pop() not in WRAPPER_PREFIXES or not all("." in k for k in sd):
            return
        sd = {k.split(".", 1)[1]: v for k, v in sd.items()}
        yield sd


class Mismatch:
    def __init__(self, sd: StateDict, expected: Mapping[str, torch.Tensor]):
        self.missing = [k for k in expected if k not in sd]
        self.unexpected = [k for k in sd if k not in expected]
        self.shape = [(k, tuple(sd[k].shape), tuple(expected[k].shape)) for k in expected
                      if k in sd and sd[k].shape != expected[k].shape]

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shape)

    def describe(self) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:_SHOWN_KEYS])}{more}")
        if self.shape:
            shown = "; ".join(f"{k} {got} vs expected {want}" for k, got, want in self.shape[:_SHOWN_KEYS])
            parts.append(f"shape mismatch {len(self.shape)}: {shown}")
        return " | ".join(parts)


def fit_state_dict(sd: StateDict, model: nn.Module,
                   adapters: Iterable[Adapter] = ()) -> tuple[StateDict, Mismatch]:
    """Find the peeling + adapter combination that makes ``sd`` match ``model``'s keys/shapes;
    returns the best candidate and its mismatch (``size == 0`` when it fits exactly)."""
    expected = model.state_dict()
    options: list[Adapter] = [lambda s: s, *adapters, *getattr(model, "checkpoint_adapters", list)()]
    best: tuple[StateDict, Mismatch] | None = None
    for peeled in _peeled(sd):
        for adapt in options:
            candidate = adapt(dict(peeled))
            mismatch = Mismatch(candidate, expected)
            if mismatch.size == 0:
                return candidate, mismatch
            if best is None or mismatch.size < best[1].size:
                best = (candidate, mismatch)
    assert best is not None
    return best


def describe_architecture(model: nn.Module) -> str:
    arch = getattr(model, "arch", None)
    if isinstance(arch, Mapping):
        kwargs = ", ".join(f"{k}={v!r}" for k, v in arch.get("kwargs", {}).items())
        return f"{arch.get('name')}({kwargs})"
    return type(model).__name__


def apply_source(sd: StateDict, source: CheckpointSource, model_keys: Container[str] = ()) -> StateDict:
    """A source's file keys -> our module names: drop the keys its forward never reads (unless
    the model has them, e.g. training-only buffers it keeps), and rename the first matching prefix."""
    out = {}
    for key, value in sd.items():
        old, new = next(((o, n) for o, n in source.rename if key.startswith(o)), ("", ""))
        ours = new + key[len(old):]
        if key.startswith(source.drop) and ours not in model_keys:
            continue
        out[ours] = value
    return out


def load_into(model: nn.Module, path: str | os.PathLike, trust_checkpoint: bool = False, strict: bool = True,
              adapters: Iterable[Adapter] = (), ignore: tuple[str, ...] = (),
              source: CheckpointSource | None = None) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (in place) and return the model.

    ``source`` (detectors/sources.py) says how its publisher wrapped and named the weights.
    ``strict=False`` loads every key whose name and shape fit, reports how many did and which
    modules kept their initial values, and refuses when a whole component stays uninitialised.
    ``ignore`` lists key prefixes (of the model) that are neither required nor loaded.
    """
    raw = read_state_dict(path, trust_checkpoint, source.container if source else ())
    sd = apply_source(raw, source, model.state_dict()) if source else raw
    fitted, mismatch = fit_state_dict(sd, model, adapters)
    if ignore:
        fitted = {k: v for k, v in fitted.items() if not k.startswith(ignore)}
        mismatch = Mismatch(fitted, {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)})
    if strict and mismatch.size:
        from detectors.preset_match import strict_failure

        raise UserError(strict_failure(model, str(path), raw, mismatch))
    expected = model.state_dict()
    usable = {k: v.to(expected[k].dtype) for k, v in fitted.items()
              if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)
    if not strict:
        report_partial_load(model, set(usable), path, ignore)
    return model


def report_partial_load(model: nn.Module, loaded: set[str], path: str | os.PathLike,
                        ignore: tuple[str, ...] = ()) -> None:
    """After a non-strict load: print the count of loaded tensors and the modules left at their
    initial values; refuse when a whole component (see ``components``) got nothing."""
    import sys

    wanted = [k for k in model.state_dict() if not k.startswith(ignore) and not k.endswith("num_batches_tracked")]
    untouched = untouched_modules(model, loaded, wanted)
    name = describe_architecture(model)
    empty = [c for c in components(model) if any(k.startswith(c + ".") for k in wanted)
             and not any(k.startswith(c + ".") for k in loaded)]
    count = f"loaded {len([k for k in wanted if k in loaded])} of {len(wanted)} tensors"
    if empty:
        raise UserError(f"checkpoint {str(path)!r} leaves {_listed(empty)} of {name} entirely at initial "
                        f"values ({count}, strict=False); it is not a checkpoint of this architecture")
    shown = f"; at initial values: {_listed(untouched)}" if untouched else ""
    print(f"note: non-strict load of {str(path)!r} into {name}: {count}{shown}", file=sys.stderr)


def untouched_modules(model: nn.Module, loaded: set[str], wanted: Iterable[str]) -> list[str]:
    """Modules none of whose own tensors (of ``wanted``) were loaded."""
    owners: dict[str, list[str]] = {}
    for key in wanted:
        owners.setdefault(key.rpartition(".")[0], []).append(key)
    return [m for m, keys in owners.items() if not any(k in loaded for k in keys)]


def components(model: nn.Module) -> list[str]:
    """The detector's parts: its children that hold tensors, looking through a lone wrapper
    (``XceptionDetector.net``) to that network's children."""
    prefix, module = "", model
    while True:
        holders = [(n, c) for n, c in module.named_children() if any(True for _ in c.state_dict())]
        if len(holders) != 1:
            return [prefix + n for n, _ in holders]
        prefix, module = f"{prefix}{holders[0][0]}.", holders[0][1]


def _listed(names: list[str]) -> str:
    more = f" (+{len(names) - _SHOWN_KEYS} more)" if len(names) > _SHOWN_KEYS else ""
    return ", ".join(names[:_SHOWN_KEYS]) + more


# -- trained detectors: safetensors + JSON sidecar ---------------------------------------------
def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of a trained checkpoint, or None when there is none."""
    side = sidecar_path(path)
    if Path(path).suffix != ".safetensors" or not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"sidecar {str(side)!r} is not valid JSON ({exc}); delete or fix it") from exc
    return meta if isinstance(meta, dict) and meta.get("format") == SIDECAR_FORMAT else None


def save_trained(model: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write ``path`` (safetensors) and its JSON sidecar atomically; ``meta`` must hold
    ``detector`` (registry name) and ``kwargs`` (architecture kwargs)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"output {str(path)!r} must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    side_tmp = sidecar_path(path).with_name(sidecar_path(path).name + ".tmp")
    side_tmp.write_text(json.dumps({"format": SIDECAR_FORMAT, **meta}, indent=2, default=_jsonable))
    os.replace(tmp, path)
    os.replace(side_tmp, sidecar_path(path))
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)


def load_trained(path: str | os.PathLike, trust_checkpoint: bool = False, **overrides: Any) -> nn.Module:
    """Rebuild a detector trained by ``bench train-detector`` from its sidecar and load its weights."""
    meta = read_sidecar(path)
    if meta is None:
        raise UserError(f"{str(path)!r} has no artifact-bench sidecar ({sidecar_path(path).name}); "
                        "use create_detector(NAME, checkpoint=PATH) with the architecture kwargs")
    from bench.registry import create_detector

    return create_detector(meta["detector"], checkpoint=str(path), trust_checkpoint=trust_checkpoint,
                           **{**meta.get("kwargs", {}), **overrides})


def build_detector(name: str, make: Callable[..., nn.Module], checkpoint: str | os.PathLike | None,
                   trust_checkpoint: bool, strict: bool, kwargs: dict[str, Any]) -> nn.Module:
    """What every family factory does: take architecture kwargs from a trained checkpoint's
    sidecar when the caller gives none (explicit kwargs win), build, load, return in eval().
    ``source=`` (set by the source presets, detectors/sources.py) names the publisher whose file
    format and scoring rule apply."""
    kwargs = dict(kwargs)
    source_name = kwargs.pop("source", None)
    if checkpoint:
        meta = read_sidecar(checkpoint)
        if meta is not None and meta.get("detector") == name:
            kwargs = {**meta.get("kwargs", {}), **kwargs}
    source = get_source(name, source_name) if source_name else None
    model = make(**kwargs)
    model.arch = {"name": name, "kwargs": {**({"source": source_name} if source_name else {}), **kwargs}}
    if source is not None:
        model.p_fake_rule = source.p_fake
    if checkpoint:
        load_into(model, checkpoint, trust_checkpoint=trust_checkpoint, strict=strict, source=source)
    return model.eval()


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike, trust_checkpoint: bool = False,
                          head_prefixes: tuple[str, ...] = ("classifier.", "fc.", "last_linear.", "head.")
                          ) -> None:
    """Load ImageNet (or other) weights into a backbone, ignoring its classification head."""
    sd = {k: v for k, v in read_state_dict(path, trust_checkpoint).items() if not k.startswith(head_prefixes)}
    fitted, _ = fit_state_dict(sd, backbone)
    expected = {k: v for k, v in backbone.state_dict().items() if not k.startswith(head_prefixes)}
    mismatch = Mismatch(fitted, expected)
    if mismatch.size:
        raise UserError(f"backbone weights {str(path)!r} do not fit {type(backbone).__name__}: "
                        f"{mismatch.describe()}")
    backbone.load_state_dict(fitted, strict=False)

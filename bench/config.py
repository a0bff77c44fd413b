"""Matrix YAML -> validated dataclasses.

A matrix names one dataset, the detectors (each is a source and a target), the attacks, the
metrics and the run settings::

    name: tiny
    seed: 0
    dataset: {name: synthetic, n: 32}
    detectors:
      small: {detector: tiny_cnn, width: 8}      # display name -> registry name + kwargs
      tiny_cnn: {}                               # registry name defaults to the display name
    attacks:
      pgd: {preset: paper-celebdf, steps: 5}
      fgsm_big: {attack: fgsm, eps: 0.1}
    metrics: {mode: paper, quality: [tv, esnle], identity: none}

``${VAR}`` and ``${VAR:-default}`` expand from the environment. Every validation error names
the file and the key.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import UserError

MATRIX_DIR = Path(__file__).parent / "matrices"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
METRIC_MODES = ("paper", "clean")


@dataclass
class ComponentSpec:
    """One detector or attack of the matrix: its display name, registry name and kwargs."""

    label: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricsSpec:
    mode: str = "paper"  # paper: success-only, 8-bit truncation; clean: all fakes, rounding
    quality: list[str] = field(default_factory=list)  # tv, esnle, lpips, ssim, psnr
    identity: str = "none"  # none | dlib | irse50 | arcface
    identity_options: dict[str, Any] = field(default_factory=dict)
    bootstrap: int = 1000


@dataclass
class MatrixConfig:
    name: str
    dataset: DatasetSpec
    detectors: list[ComponentSpec]
    attacks: list[ComponentSpec]
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    seed: int = 0
    batch_size: int = 8
    shard_size: int = 16
    device: str = "auto"
    limit: int | None = None  # max fake samples attacked (None = all)
    sources: list[str] | None = None  # detectors used as attack sources (default: all)
    ensemble: str | None = None  # "leave-one-out": an extra source row per attack (bench/ensemble.py)
    prepare: list[str] = field(default_factory=list)  # hooks run before the matrix is built
    explain: dict[str, Any] = field(default_factory=dict)  # {n: 4} renders grids after the run
    report: dict[str, Any] = field(default_factory=dict)  # {benchmark_section: demo, note: ...}
    files: dict[str, Any] = field(default_factory=dict)  # path -> {what, where}: for missing-file messages
    threads: int | None = None  # intra-op CPU threads (None: bench/compute_settings.DEFAULT_THREADS)
    deterministic: bool = False  # PyTorch's deterministic kernels (bench/compute_settings.py)
    # re-score every adversarial set (and the reals) after these operations (bench/postprocess.py)
    postprocess: list[str] = field(default_factory=list)
    path: str = ""

    def resolved(self) -> dict[str, Any]:
        """The config as plain data, for the manifest and the run id (path excluded)."""
        data = asdict(self)
        data.pop("path")
        # compute settings are checked on resume (bench/compute_settings.py), not hashed: a
        # resume under other ones is refused instead of silently starting another run
        data.pop("threads")
        data.pop("deterministic")
        if data["ensemble"] is None:
            data.pop("ensemble")  # off: the identity (and run id) of a matrix without the key is unchanged
        return data

    @property
    def source_specs(self) -> list[ComponentSpec]:
        wanted = self.sources or [d.label for d in self.detectors]
        return [d for d in self.detectors if d.label in wanted]


def resolve_matrix_path(name_or_path: str | None) -> Path:
    """NAME resolves to bench/matrices/NAME.yaml; anything with a suffix or slash is a path."""
    name_or_path = name_or_path or "demo"
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path or candidate.exists():
        if not candidate.is_file():
            raise UserError(f"matrix file {name_or_path} does not exist; give a YAML path or one of: "
                            f"{', '.join(available_matrices())}")
        return candidate
    builtin = MATRIX_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        import difflib

        close = difflib.get_close_matches(name_or_path, available_matrices(), n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UserError(f"unknown matrix {name_or_path!r}.{hint} Built-in: {', '.join(available_matrices())}")
    return builtin


def available_matrices() -> list[str]:
    return sorted(p.stem for p in MATRIX_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read matrix file {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a matrix must be a YAML mapping with keys name, dataset, detectors, attacks")
    return data


def expand_env(value: Any, where: str = "", values: dict[str, str] | None = None,
               pending: tuple[str, ...] = ()) -> Any:
    """Expand ${VAR} / ${VAR:-default} in every string of a nested structure: from ``values``
    (what prepare hooks returned), then the environment. A ``pending`` variable (one a hook will
    provide) is left as written, so a matrix can be checked before its hooks run."""
    values = values or {}
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in values:
                return values[var]
            if var in pending:
                return m.group(0)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise UserError(f"{where}: environment variable {var} is not set (used as ${{{var}}})")

        expanded = _ENV.sub(sub, value)
        if expanded != value and _ENV.fullmatch(value):
            # a value that is one whole ${VAR} takes the YAML type of its text (48 -> int)
            try:
                typed = yaml.safe_load(expanded)
            except yaml.YAMLError:
                return expanded
            return typed if isinstance(typed, (int, float, bool)) else expanded
        return expanded
    if isinstance(value, dict):
        return {(expand_env(k, where, values, pending) if isinstance(k, str) else k):
                expand_env(v, f"{where}.{k}" if where else str(k), values, pending) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]", values, pending) for i, v in enumerate(value)]
    return value


_TOP_KEYS = {"name", "dataset", "detectors", "attacks", "metrics", "seed", "batch_size", "shard_size",
             "device", "limit", "sources", "prepare", "explain", "report", "files", "description", "threads",
             "deterministic", "postprocess", "ensemble"}


def _expect(cond: bool, path: Path, key: str, what: str, got: Any) -> None:
    if not cond:
        raise UserError(f"{path}: key '{key}' must be {what}, got {got!r}")


def _components(raw: Any, path: Path, key: str, registry_key: str) -> list[ComponentSpec]:
    _expect(isinstance(raw, dict) and raw, path, key, f"a non-empty mapping of name -> {registry_key} options",
            raw)
    specs = []
    for label, kwargs in raw.items():
        kwargs = {} if kwargs is None else kwargs
        _expect(isinstance(kwargs, dict), path, f"{key}.{label}", "a mapping of options", kwargs)
        kwargs = dict(kwargs)
        name = kwargs.pop(registry_key, label)
        _expect(isinstance(name, str), path, f"{key}.{label}.{registry_key}", "a registry name", name)
        specs.append(ComponentSpec(str(label), name, kwargs))
    return specs


def _ensemble(value: Any, detectors: list[ComponentSpec], path: Path) -> str:
    """The ``ensemble:`` mode, checked: a known mode, at least two detectors (the ensemble for a
    target is the others), no detector named like the ensemble's row."""
    from bench.ensemble import ENSEMBLE_MODES, reserved_label

    _expect(value in ENSEMBLE_MODES, path, "ensemble", f"one of {', '.join(ENSEMBLE_MODES)} (or absent)", value)
    _expect(len(detectors) >= 2, path, "ensemble",
            "used with at least two detectors (the ensemble for a target is every other detector)", value)
    clash = [d.label for d in detectors if reserved_label(d.label)]
    _expect(not clash, path, f"detectors.{clash[0] if clash else ''}",
            "renamed: the ensemble row uses that name (ensemble: on)", clash[0] if clash else None)
    return value


def parse_matrix(data: dict[str, Any], path: Path, values: dict[str, str] | None = None,
                 pending: tuple[str, ...] = ()) -> MatrixConfig:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UserError(f"{path}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("dataset", "detectors", "attacks"):
        if key not in data:
            raise UserError(f"{path}: missing required key '{key}'")
    data = expand_env(copy.deepcopy(data), "", values, pending)
    from bench.sweep import expand_sweeps  # an option given as a list: one entry per value

    ds = data["dataset"]
    if isinstance(ds, str):
        ds = {"name": ds}
    _expect(isinstance(ds, dict) and isinstance(ds.get("name"), str), path, "dataset",
            "a mapping with a 'name'", ds)
    ds = dict(ds)
    dataset = DatasetSpec(ds.pop("name"), ds)

    metrics_raw = data.get("metrics") or {}
    _expect(isinstance(metrics_raw, dict), path, "metrics", "a mapping", metrics_raw)
    metrics = MetricsSpec()
    for k, v in metrics_raw.items():
        if not hasattr(metrics, k):
            raise UserError(f"{path}: unknown key 'metrics.{k}'; allowed: mode, quality, identity, "
                            "identity_options, bootstrap")
        setattr(metrics, k, v)
    _expect(metrics.mode in METRIC_MODES, path, "metrics.mode", f"one of {METRIC_MODES}", metrics.mode)
    _expect(isinstance(metrics.quality, list), path, "metrics.quality", "a list", metrics.quality)
    _expect(isinstance(metrics.bootstrap, int), path, "metrics.bootstrap", "an integer", metrics.bootstrap)

    cfg = MatrixConfig(
        name=str(data.get("name") or path.stem),
        dataset=dataset,
        detectors=_components(data["detectors"], path, "detectors", "detector"),
        attacks=expand_sweeps(_components(data["attacks"], path, "attacks", "attack"), path),
        metrics=metrics,
        path=str(path),
    )
    for key, kind in (("seed", int), ("batch_size", int), ("shard_size", int)):
        if key in data:
            _expect(isinstance(data[key], kind) and not isinstance(data[key], bool), path, key,
                    "an integer", data[key])
            setattr(cfg, key, data[key])
    for key in ("batch_size", "shard_size"):
        _expect(getattr(cfg, key) > 0, path, key, "a positive integer", getattr(cfg, key))
    if data.get("limit") is not None:
        _expect(isinstance(data["limit"], int) and data["limit"] > 0, path, "limit", "a positive integer",
                data["limit"])
        cfg.limit = data["limit"]
    if data.get("threads") is not None:
        _expect(isinstance(data["threads"], int) and not isinstance(data["threads"], bool) and data["threads"] > 0,
                path, "threads", "a positive integer", data["threads"])
        cfg.threads = data["threads"]
    if "deterministic" in data:
        _expect(isinstance(data["deterministic"], bool), path, "deterministic", "true or false", data["deterministic"])
        cfg.deterministic = data["deterministic"]
    if "device" in data:
        _expect(isinstance(data["device"], str), path, "device", "a string like cpu, cuda, cuda:1 or auto",
                data["device"])
        cfg.device = data["device"]
    if data.get("sources") is not None:
        labels = [d.label for d in cfg.detectors]
        _expect(isinstance(data["sources"], list) and all(s in labels for s in data["sources"]), path,
                "sources", f"a list of detector names among {labels}", data["sources"])
        cfg.sources = data["sources"]
    if data.get("ensemble") is not None:
        cfg.ensemble = _ensemble(data["ensemble"], cfg.detectors, path)
    for key in ("prepare",):
        if key in data:
            _expect(isinstance(data[key], list), path, key, "a list", data[key])
            setattr(cfg, key, data[key])
    if data.get("postprocess") is not None:
        from bench.postprocess import validate_postprocess

        names = data["postprocess"]
        _expect(isinstance(names, list) and all(isinstance(n, str) for n in names), path, "postprocess",
                "a list of operation names such as [jpeg75, resize0.5]", names)
        try:
            validate_postprocess(names)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None  # the message names the postprocess
        cfg.postprocess = list(dict.fromkeys(names))
    for key in ("explain", "report", "files"):
        if key in data:
            _expect(isinstance(data[key], dict), path, key, "a mapping", data[key])
            setattr(cfg, key, data[key])
    return cfg


def validate_names(cfg: MatrixConfig) -> None:
    """Check every registry name and every option (name with did-you-mean, type) of the
    dataset, detectors and attacks against their factories, before any work starts."""
    from bench.options import check_options, resolve_options
    from bench.registry import ATTACKS, DATASETS, DETECTORS, UnknownNameError

    try:
        check_options(DATASETS, cfg.dataset.name, cfg.dataset.options, f"{cfg.path}: dataset")
        for spec in cfg.detectors:
            resolve_options(DETECTORS, spec.name, spec.kwargs, f"{cfg.path}: detectors.{spec.label}",
                            fill_defaults=False)
        for spec in cfg.attacks:
            resolve_options(ATTACKS, spec.name, spec.kwargs, f"{cfg.path}: attacks.{spec.label}", fill_defaults=False)
    except UnknownNameError as exc:
        raise UserError(f"{cfg.path}: {exc}") from None


def load_matrix(name_or_path: str | None, prepare: bool = True, quiet: bool = False) -> MatrixConfig:
    """The load and prepare stages of ``bench run``.

    Load is pure: parse and validate every key, name and option, with the ${VARS} that prepare
    hooks provide left unexpanded; nothing is trained and no environment variable is written.
    Prepare (``prepare=True``) then runs the hooks (e.g. building the offline demo world) and
    parses the matrix again with the values they return substituted."""
    from bench.prepare import check_hooks, run_prepare_hooks

    path = resolve_matrix_path(name_or_path)
    data = read_yaml(path)
    from bench.matrix_checks import check_matrix
    from bench.trained_weights import use_trained_weights

    hooks = data.get("prepare") or []
    pending = tuple(check_hooks(hooks, path))
    cfg = check_matrix(parse_matrix(data, path, pending=pending), data)
    validate_names(cfg)
    if prepare and hooks:
        cfg = check_matrix(parse_matrix(data, path, values=run_prepare_hooks(hooks, path, quiet=quiet)), data)
        validate_names(cfg)
    return use_trained_weights(cfg, quiet)

"""Registries: name -> factory, for detectors, attacks, datasets and metrics.

Built-ins register with a decorator on their factory (timm's ``register_model`` pattern) when
their package is imported; third-party packages add entries through the entry-point groups
``artifact_bench.<kind>``. Both are discovered lazily, on the first lookup, and a module or
plugin that fails to import is recorded by name (``Registry.broken``) while the rest keep working.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


class UnknownNameError(KeyError):
    """An unknown registry name; the message carries a did-you-mean suggestion."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class DuplicateNameError(UnknownNameError):
    """Two entries (built-in or plugin) claim the same name; the message names both origins."""


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    origin: str  # "builtin:<module>" or "plugin:<distribution>"
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    help: str = ""
    # bump when the entry's numbers change: a resume refuses to mix shards of two versions
    version: str = "1"
    # where a factory taking **kwargs passes them (classes or functions): their signatures are
    # the options ``bench.options`` accepts and fills defaults from
    accepts: tuple[Callable[..., Any], ...] = ()
    # attacks: the leaderboard family (linf, latent, statistical); None = derived from the budget
    threat_model: str | None = None


class Registry:
    def __init__(self, kind: str, builtin_packages: tuple[str, ...]):
        self.kind = kind
        self.group = f"artifact_bench.{kind}"
        self._builtin_packages = builtin_packages
        self._entries: dict[str, Entry] = {}
        self.broken: dict[str, str] = {}  # module or plugin name -> one-line error
        self._loaded = False
        self._plugin_origin: str | None = None
        self.conflicts: dict[str, list[str]] = {}  # name -> the origins that claim it

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str | None = None, *, presets: dict[str, dict[str, Any]] | None = None,
                 help: str = "", version: str = "1", accepts: tuple[Callable[..., Any], ...] = (),
                 threat_model: str | None = None) -> Callable:
        """Decorator: ``@DETECTORS.register("xception", version="1")`` over a factory (class or
        function). ``version``: bump it whenever the entry's numbers change."""

        def wrap(factory: Callable) -> Callable:
            key = name or factory.__name__
            origin = self._plugin_origin or f"builtin:{factory.__module__}"
            doc = help or (factory.__doc__ or "").strip().split("\n")[0]
            self._add(Entry(key, factory, origin, dict(presets or {}), doc, str(version), tuple(accepts),
                            threat_model))
            return factory

        return wrap

    def _add(self, entry: Entry) -> None:
        """Register ``entry``; a second claim on a taken name (other than the same factory seen
        again) is a conflict: the name is withdrawn and looking it up names both origins."""
        known = self._entries.get(entry.name)
        if entry.name in self.conflicts:
            self.conflicts[entry.name].append(entry.origin)
        elif known is not None and _qualname(known.factory) != _qualname(entry.factory):
            self.conflicts[entry.name] = [known.origin, entry.origin]
            del self._entries[entry.name]
        else:
            self._entries[entry.name] = entry

    # -- discovery ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package in self._builtin_packages:
            import_submodules(package, self.broken)
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep.dist, "name", None) or ep.value
            self._plugin_origin = f"plugin:{dist}"
            try:
                obj = ep.load()
                # An entry point may name a factory directly, or a module whose import registers.
                registered = ep.name in self._entries and self._entries[ep.name].factory is obj
                if callable(obj) and not registered and not isinstance(obj, type(pkgutil)):
                    self._add(Entry(ep.name, obj, self._plugin_origin, dict(getattr(obj, "presets", {}) or {}),
                                    (obj.__doc__ or "").strip().split("\n")[0],
                                    str(getattr(obj, "version", "1")), tuple(getattr(obj, "accepts", ()) or ()),
                                    getattr(obj, "threat_model", None)))
            except Exception as exc:  # a broken plugin must not break the others
                self.broken[f"{ep.name} ({dist})"] = _one_line(exc)
            finally:
                self._plugin_origin = None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> Entry:
        self._load()
        if name in self.conflicts:
            raise DuplicateNameError(self.conflict_message(name))
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        broken = f" (failed to load: {'; '.join(f'{k}: {v}' for k, v in self.broken.items())})" if self.broken else ""
        return f"unknown {self.kind[:-1]} {name!r}.{hint} Known: {known}{broken}."

    def conflict_message(self, name: str) -> str:
        return (f"{self.kind[:-1]} name {name!r} is registered twice: by {' and by '.join(self.conflicts[name])}; "
                "uninstall or rename one of them")

    def resolve_kwargs(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Expand ``preset=`` into the entry's preset dict; explicit kwargs override it."""
        entry = self.get(name)
        kwargs = dict(kwargs)
        preset = kwargs.pop("preset", None)
        if preset is None:
            return kwargs
        if preset not in entry.presets:
            close = difflib.get_close_matches(str(preset), list(entry.presets), n=3, cutoff=0.4)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"unknown preset {preset!r} for {self.kind[:-1]} {name!r}.{hint} "
                                   f"Known: {', '.join(sorted(entry.presets)) or 'none'}.")
        return {**entry.presets[preset], **kwargs}

    def create(self, name: str, **kwargs: Any) -> Any:
        entry = self.get(name)
        return entry.factory(**self.resolve_kwargs(name, kwargs))


def _qualname(factory: Callable) -> str:
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"


def _one_line(exc: BaseException) -> str:
    from bench.install_hints import install_hint

    return install_hint(exc) or f"{type(exc).__name__}: {exc}".splitlines()[0]


def import_submodules(package: str, broken: dict[str, str]) -> None:
    """Import ``package`` and each of its direct submodules, recording failures by module name
    so that one missing optional dependency does not hide every other built-in."""
    try:
        pkg = importlib.import_module(package)
    except Exception as exc:
        broken[package] = _one_line(exc)
        return
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", []), prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            broken[info.name] = _one_line(exc)
            if _debug():
                traceback.print_exc()


def _debug() -> bool:
    import os

    return os.environ.get("BENCH_DEBUG", "") not in ("", "0")


DETECTORS = Registry("detectors", ("detectors",))
ATTACKS = Registry("attacks", ("attacks",))
DATASETS = Registry("datasets", ("bench.data",))
METRICS = Registry("metrics", ("bench.metrics",))

register_detector = DETECTORS.register
register_attack = ATTACKS.register
register_dataset = DATASETS.register
register_metric = METRICS.register

ALL = {"detectors": DETECTORS, "attacks": ATTACKS, "datasets": DATASETS, "metrics": METRICS}


def create_detector(name: str, **kwargs: Any):
    """Build a registered detector. ``checkpoint=PATH`` and ``trust_checkpoint=`` are handled by
    the detector factories through ``detectors.checkpoints``."""
    return DETECTORS.create(name, **kwargs)


def create_attack(name: str, **kwargs: Any):
    attack = ATTACKS.create(name, **kwargs)
    if not getattr(attack, "name", None) or attack.name == "attack":
        attack.name = name
    return attack


def create_dataset(name: str, **kwargs: Any):
    return DATASETS.create(name, **kwargs)

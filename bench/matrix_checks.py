"""Value checks on a parsed matrix, run at load, before anything is built or written.

Option *names* and *types* are checked against the factories' signatures elsewhere; this module
checks what a signature cannot say: that ``steps`` is a whole number of at least 1, that ``eps``
lies in [0, 1], that the matrix name is one safe folder name, and that no component option asks
for full unpickling (only the ``--trust-checkpoint`` flag may, see ``bench.trust``).
Every message names the file and the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from bench.config import MatrixConfig
from bench.errors import UserError
from bench.trust import refuse_trust_option


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


Rule = tuple[Callable[[Any], bool], str]
AT_LEAST_1: Rule = (lambda v: _whole(v) and v >= 1, "a whole number >= 1")
AT_LEAST_0: Rule = (lambda v: _whole(v) and v >= 0, "a whole number >= 0")
UNIT_RANGE: Rule = (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1] (images are in [0, 1] units)")
STEP_SIZE: Rule = (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1] (images are in [0, 1] units)")

# option name -> rule, for every attack (presets' values are the code's own and are not checked)
ATTACK_RULES: dict[str, Rule] = {"steps": AT_LEAST_1, "eps": UNIT_RANGE, "step": STEP_SIZE}
DATASET_RULES: dict[str, Rule] = {
    "n": AT_LEAST_1,
    "size": (lambda v: v is None or (_whole(v) and v >= 8), "a whole number of pixels >= 8, or null"),
    "frames_per_video": AT_LEAST_1,
}
# the synthetic dataset alternates real and fake: it needs one of each
DATASET_NAME_RULES: dict[tuple[str, str], Rule] = {
    ("synthetic", "n"): (lambda v: _whole(v) and v >= 2, "a whole number >= 2 (one real and one fake at least)"),
}


def _check(value: Any, rule: Rule, where: str) -> None:
    ok, what = rule
    if not ok(value):
        raise UserError(f"{where} must be {what}, got {value!r}")


def check_run_name(name: str, where: str) -> None:
    """The matrix name becomes one folder under --out: no separators, no '..', not empty."""
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or name.startswith("~") or name != name.strip())
    if bad:
        raise UserError(f"{where}: key 'name' must be one plain folder name (letters, digits, '-', '_', '.'), "
                        f"got {name!r}; the run is written to OUT/<name>/<run-id>")


def check_matrix(cfg: MatrixConfig, raw: Mapping[str, Any] | None = None) -> MatrixConfig:
    """``raw`` is the YAML mapping as read: an explicit ``name:`` that is empty is an error too
    (only a matrix without the key takes its file's stem)."""
    path = cfg.path
    if raw is not None and "name" in raw and not (isinstance(raw["name"], (str, int)) and str(raw["name"])):
        check_run_name("", path)
    check_run_name(cfg.name, path)
    refuse_trust_option(cfg.dataset.options, f"{path}: dataset")
    refuse_trust_option(cfg.metrics.identity_options, f"{path}: metrics.identity_options")
    for section, specs in (("detectors", cfg.detectors), ("attacks", cfg.attacks)):
        for spec in specs:
            refuse_trust_option(spec.kwargs, f"{path}: {section}.{spec.label}")
    for spec in cfg.attacks:
        for key, rule in ATTACK_RULES.items():
            if key in spec.kwargs:
                _check(spec.kwargs[key], rule, f"{path}: attacks.{spec.label}.{key}")
    for key, value in cfg.dataset.options.items():
        rule = DATASET_NAME_RULES.get((cfg.dataset.name, key)) or DATASET_RULES.get(key)
        if rule is not None:
            _check(value, rule, f"{path}: dataset.{key}")
    _check(cfg.metrics.bootstrap, AT_LEAST_0, f"{path}: metrics.bootstrap")
    if "n" in cfg.explain:
        _check(cfg.explain["n"], AT_LEAST_1, f"{path}: explain.n")
    wanted = cfg.explain.get("attacks")
    labels = [spec.label for spec in cfg.attacks]
    for label in [wanted] if isinstance(wanted, str) else (wanted or []):
        if label not in labels:
            raise UserError(f"{path}: explain.attacks names {label!r}, which is not among the attacks: "
                            f"{', '.join(labels)}")
    return cfg

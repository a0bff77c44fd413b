"""`bench explain`: counterfactual figures for a finished run, read back from its stored shards.

For each (source, attack) the figure shows the first ``n`` attacked fakes, successful ones
first: original | inversion (latent attacks) | adversarial | amplified residual | Grad-CAM of
every detector on original and adversarial, the source detector first.

Figures are an extra view: a detector that cannot give a Grad-CAM is left out of the CAM
columns with one line, and a figure that fails is reported with one line and skipped, so
explaining never costs a run its records, tables or BENCHMARK.md section.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from bench.ensemble import ENSEMBLE
from bench.errors import UserError
from bench.progress import say
from bench.registry import create_dataset, create_detector
from bench.runner import dequantize
from bench.store import RunStore, safe_part
from bench.trust import refuse_trust_option

# Samples per figure when neither the matrix nor --n says. Each sample costs two Grad-CAM passes
# per detector; 4 keeps explain a few percent of a run (README, "Explanation figures").
DEFAULT_N = 4


def _one_line(exc: BaseException) -> str:
    """The exception's first line, escaped: its text must not be read as rich markup."""
    from rich.markup import escape

    text = str(exc).strip()
    return escape(f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__)


def _pick(records, source: str, attack: str, n: int) -> list[int]:
    rows = records[(records.source == source) & (records.attack == attack) & (records.target == source)]
    rows = rows.sort_values(["success", "sample_index"], ascending=[False, True], kind="stable")
    return [int(i) for i in rows["sample_index"].head(n)]


def _explainable(detectors: dict[str, Any]) -> dict[str, Any]:
    """The detectors Grad-CAM can run on; one line for each one left out."""
    from bench.explain import cam_unavailable

    kept = {}
    for label, det in detectors.items():
        reason = cam_unavailable(det)
        if reason is None:
            kept[label] = det
        else:
            say(f"explain: no Grad-CAM columns for detector '{label}': {reason}")
    return kept


def _stored_images(store: RunStore, source: str, attack: str, wanted: list[int]):
    """The adversarial (and inversion) images of ``wanted`` samples, in that order."""
    adv, inv = {}, {}
    for k in store.shard_indices(("adv", source, attack), "safetensors"):
        shard = store.read_tensors(("adv", source, attack), k)
        for pos, index in enumerate(shard["index"].tolist()):
            if index in wanted:
                adv[index] = shard["adv"][pos]
                if "inversion" in shard:
                    inv[index] = shard["inversion"][pos]
    adv01 = dequantize(torch.stack([adv[i] for i in wanted]))
    inv01 = dequantize(torch.stack([inv[i] for i in wanted])) if inv else None
    return adv01, inv01


def explain_run(store: RunStore, source: str | None = None, attack: str | list[str] | None = None,
                n: int = DEFAULT_N, quiet: bool = False) -> list[Path]:
    from bench.explain import explain_figure

    config = store.manifest["config"]
    records = store.records()
    # the ensemble row has no white-box rows to pick from (its sets are graded by other detectors)
    sources = [source] if source else [s for s in dict.fromkeys(records["source"]) if s != ENSEMBLE]
    wanted_attacks = [attack] if isinstance(attack, str) else attack
    attacks = wanted_attacks or list(dict.fromkeys(records["attack"]))
    for name, chosen, known in (("source", [source] if source else [], set(records["source"])),
                                ("attack", attacks, set(records["attack"]))):
        for value in chosen:
            if value not in known:
                raise UserError(f"--{name} {value!r} is not in this run; it has: {', '.join(sorted(known))}")
    for d in config["detectors"]:  # a run folder may come from someone else: it cannot grant trust
        refuse_trust_option(d["kwargs"], f"{store.root / 'manifest.json'}: detectors.{d['label']}")
    dataset = create_dataset(config["dataset"]["name"], **config["dataset"]["options"])
    detectors = {d["label"]: create_detector(d["name"], **d["kwargs"]).eval() for d in config["detectors"]}
    cam_detectors = _explainable(detectors)
    written = []
    figures = [(s, a) for s in sources for a in attacks]
    for number, (s, a) in enumerate(figures, 1):
        ordered = {k: v for k, v in cam_detectors.items() if k == s}  # the source first
        ordered.update({k: v for k, v in cam_detectors.items() if k != s})
        started = time.time()
        out = store.figures_dir / "explain" / f"{safe_part(s)}__{safe_part(a)}.png"
        position = f"explain {number}/{len(figures)}: {a} on {s}"
        try:
            wanted = _pick(records, s, a, n)
            if not wanted:
                say(f"{position}: no attacked samples, no figure", quiet)
                continue
            adv01, inv01 = _stored_images(store, s, a, wanted)
            orig = torch.stack([dataset[i].image01 for i in wanted])
            explain_figure(orig, adv01, ordered, out, inversion01=inv01)
        except Exception as exc:  # a figure is a view; its failure must not lose the run
            say(f"{position}: figure failed ({_one_line(exc)}); skipped")
            continue
        written.append(out)
        say(f"{position} -> {out.name} ({time.time() - started:.1f} s)", quiet)
    say(f"wrote {len(written)} explanation figures under {store.figures_dir / 'explain'}", quiet)
    return written


def explain_after_run(store: RunStore, explain: dict[str, Any], quiet: bool = False) -> list[Path]:
    """The figures a matrix's ``explain:`` asks for, after its tables are written. Any failure,
    the matrix's own options included, ends in one line: the run is already complete."""
    try:
        return explain_run(store, n=int(explain.get("n", DEFAULT_N)), attack=explain.get("attacks"), quiet=quiet)
    except Exception as exc:
        say(f"explain skipped ({_one_line(exc)}); the run's records and tables are complete; "
            f"retry with `bench explain {store.root}`")
        return []

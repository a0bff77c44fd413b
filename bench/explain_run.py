"""`bench explain`: counterfactual figures for a finished run, read back from its stored shards.

For each (source, attack) the figure shows the first ``n`` attacked fakes, successful ones
first: original | inversion (latent attacks) | adversarial | amplified residual | Grad-CAM of
every detector on original and adversarial, the source detector first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.errors import UserError
from bench.progress import progress_bar, say
from bench.registry import create_dataset, create_detector
from bench.runner import dequantize
from bench.store import RunStore, safe_part
from bench.trust import refuse_trust_option


def _pick(records, source: str, attack: str, n: int) -> list[int]:
    rows = records[(records.source == source) & (records.attack == attack) & (records.target == source)]
    rows = rows.sort_values(["success", "sample_index"], ascending=[False, True], kind="stable")
    return [int(i) for i in rows["sample_index"].head(n)]


def explain_run(store: RunStore, source: str | None = None, attack: str | list[str] | None = None, n: int = 8,
                quiet: bool = False) -> list[Path]:
    from bench.explain import explain_figure

    config = store.manifest["config"]
    records = store.records()
    sources = [source] if source else list(dict.fromkeys(records["source"]))
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
    written = []
    with progress_bar(quiet) as bar:
        task = bar.add_task("explain", total=len(sources) * len(attacks))
        for s in sources:
            ordered = {s: detectors[s], **{k: v for k, v in detectors.items() if k != s}}
            for a in attacks:
                wanted = _pick(records, s, a, n)
                adv, inv, orig = [], [], []
                for k in store.shard_indices(("adv", s, a), "safetensors"):
                    shard = store.read_tensors(("adv", s, a), k)
                    for pos, index in enumerate(shard["index"].tolist()):
                        if index in wanted:
                            adv.append((wanted.index(index), shard["adv"][pos]))
                            if "inversion" in shard:
                                inv.append((wanted.index(index), shard["inversion"][pos]))
                adv.sort(key=lambda t: t[0])
                inv.sort(key=lambda t: t[0])
                orig = torch.stack([dataset[i].image01 for i in wanted])
                out = store.figures_dir / "explain" / f"{safe_part(s)}__{safe_part(a)}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                explain_figure(orig, dequantize(torch.stack([t[1] for t in adv])), ordered, out,
                               inversion01=dequantize(torch.stack([t[1] for t in inv])) if inv else None)
                written.append(out)
                bar.advance(task)
    say(f"wrote {len(written)} explanation figures under {store.figures_dir / 'explain'}", quiet)
    return written

"""``square``: the query-based black-box row, torchattacks 3.5.1 ``Square`` (L-inf, one restart).

The attack only reads the detector's logits (no gradient). ``queries`` is the budget per sample,
counted as every detector evaluation of that sample, and ``info["queries"]`` records how many
each sample used. torchattacks' ``Square.perturb`` evaluates an attacked sample

1. once clean (samples already classified as the other class stop here: 1 query),
2. once at the random start (vertical stripes of +-eps),
3. once per search iteration until the sample flips or ``n_queries`` iterations have run,
4. once more to check the result,

so ``n_queries = queries - 3`` and no sample exceeds ``queries``. The per-sample count is
torchattacks' own (``attack_single_run`` returns it for steps 2-3 and ``perturb`` drops it); we
keep it by wrapping that method on the instance, add steps 1 and 4, and check the sum against
the number of rows the detector actually evaluated, so a different torchattacks fails loudly
instead of recording wrong counts.

Attack health (``bench/attack_health.py``), from the same calls at no extra query:
``steps_taken`` = search iterations a sample ran (0 for samples stopped at the clean check),
``final_loss`` = cross-entropy on the true label at the final check (at the clean check for
samples not searched; the search itself minimises ``loss``, margin or CE), and
``SATURATED_START`` from the clean check's ``p_fake``. The gradient bits are 0: no gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchattacks

from attacks._budgets import eps_presets
from attacks._common import TwoWayLogits, draw_seed, frozen_eval, seeded_global_rng
from bench.attack_health import HealthFlag, saturated
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector, p_fake_from_logits

QUERIES_OUTSIDE_SEARCH = 3  # clean check, random start, final check (see the module docstring)
LOSSES = ("margin", "ce")


class CountingLogits(TwoWayLogits):
    """``TwoWayLogits`` that counts the rows it evaluates and keeps the logits of its first call
    (torchattacks' clean check, which decides which samples are attacked) and of its last (the
    final check of the searched samples)."""

    def __init__(self, detector: torch.nn.Module):
        super().__init__(detector)
        self.rows = 0
        self.first_logits: torch.Tensor | None = None
        self.last_logits: torch.Tensor | None = None

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x01)
        self.rows += x01.shape[0]
        if self.first_logits is None:
            self.first_logits = logits.detach()
        self.last_logits = logits.detach()
        return logits


def keep_search_counts(attack: torchattacks.Square) -> list[torch.Tensor]:
    """Make ``attack`` store the per-sample counts its search returns; the list fills on the call."""
    counts: list[torch.Tensor] = []
    search = attack.attack_single_run

    def search_and_keep_count(x: torch.Tensor, y: torch.Tensor):
        used, adv = search(x, y)
        counts.append(used)
        return used, adv

    attack.attack_single_run = search_and_keep_count
    return counts


class SquareAttack(Attack):
    """torchattacks ``Square`` (L-inf) with a per-sample query budget and count."""

    def __init__(self, eps: float, queries: int, p_init: float, loss: str):
        self.eps, self.queries, self.p_init, self.loss = float(eps), int(queries), float(p_init), loss

    @property
    def search_iterations(self) -> int:
        return self.queries - QUERIES_OUTSIDE_SEARCH

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        model = CountingLogits(detector)
        seed = draw_seed(generator)
        attack = torchattacks.Square(model, norm="Linf", eps=self.eps, n_queries=self.search_iterations,
                                     n_restarts=1, p_init=self.p_init, loss=self.loss, seed=seed)
        attack.set_model_training_mode(model_training=False, batchnorm_training=False,
                                       dropout_training=False)
        attack.set_device(x01.device)
        search_counts = keep_search_counts(attack)
        labels = labels.to(device=x01.device, dtype=torch.long)
        # Square re-seeds the global RNG with ``seed`` (torch.random.manual_seed): fork it so the
        # caller's stream is left as it was.
        with frozen_eval(detector), seeded_global_rng(seed, x01.device):
            adv = attack(x01, labels)
        queries = self.count_queries(model, labels, search_counts)
        linf = (adv - x01).abs().flatten(1).amax(1)
        return AttackOutput(adv, {"linf": linf, "queries": queries, "steps": self.search_iterations,
                                  **self.health(model, labels, search_counts, getattr(detector, "p_fake_rule", "softmax"))})

    @staticmethod
    def health(model: CountingLogits, labels: torch.Tensor, search_counts: list[torch.Tensor],
               rule: str) -> dict[str, torch.Tensor]:
        """Attack-health info from the clean check, the search counts and the final check."""
        assert model.first_logits is not None and model.last_logits is not None
        attacked = model.first_logits.max(1).indices == labels
        logits = model.first_logits.clone()
        iterations = torch.zeros(len(labels), dtype=torch.int64, device=labels.device)
        if search_counts:  # the search returns 1 (its random start) + its iterations per sample
            logits[attacked] = model.last_logits
            iterations[attacked] = search_counts[0].to(labels.device).long() - 1
        start = saturated(p_fake_from_logits(model.first_logits, rule))
        return {"final_loss": F.cross_entropy(logits, labels, reduction="none"), "steps_taken": iterations,
                "health_flags": start.long() * HealthFlag.SATURATED_START}

    @staticmethod
    def count_queries(model: CountingLogits, labels: torch.Tensor,
                      search_counts: list[torch.Tensor]) -> torch.Tensor:
        """Detector evaluations per sample: the clean check for all, plus the search's own count
        and the final check for the samples torchattacks attacked (those it classified right)."""
        queries = torch.ones(len(labels), device=labels.device)
        assert model.first_logits is not None
        attacked = model.first_logits.max(1).indices == labels
        if search_counts:
            queries[attacked] += search_counts[0].to(queries.device) + 1
        if int(queries.sum().item()) != model.rows:
            raise RuntimeError(f"square: per-sample queries sum to {int(queries.sum().item())} but the "
                               f"detector evaluated {model.rows} rows; this counting assumes "
                               f"torchattacks 3.5.1 (installed: {torchattacks.__version__}).")
        return queries

    def budget(self) -> dict[str, Any]:
        return {"norm": "linf", "eps": self.eps, "steps": self.search_iterations, "queries": self.queries}


@register_attack("square", version="1", threat_model="linf", presets=eps_presets())
def square(eps: float = 8 / 255, queries: int = 5000, p_init: float = 0.8, loss: str = "margin") -> Attack:
    """Square Attack (torchattacks, L-inf): score-based black box, ``queries`` per sample."""
    if queries <= QUERIES_OUTSIDE_SEARCH:
        raise UserError(f"square: queries must be > {QUERIES_OUTSIDE_SEARCH} (a clean check, a start "
                        f"point and a final check come on top of the search); got {queries}.")
    if loss not in LOSSES:
        raise UserError(f"square: unknown loss {loss!r}; use 'margin' or 'ce'.")
    if not 0 < p_init <= 1:
        raise UserError(f"square: p_init must be in (0, 1] (got {p_init}).")
    return SquareAttack(eps, queries, p_init, loss)

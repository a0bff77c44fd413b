"""The leave-one-out ensemble surrogate (matrix key ``ensemble: leave-one-out``).

With the key on, every attack gains a source row ``ensemble``: for target ``t`` its adversarial
set is made against the mean logits of every detector *other than* ``t``, so each cell of the
row is a transfer number (the target never took part in making its set). With two detectors the
ensemble for ``t`` is simply the other detector.

How members are combined: each member's logits are first brought to the softmax form, in which
``softmax(logits)[:, 1]`` is the member's own ``p_fake`` (``Detector.p_fake_rule``). A softmax
member is unchanged; a sigmoid-rule member (Artifact-Eraser's RECCE, which reads
``sigmoid(logits[:, 1])``) becomes ``[0, z_fake]``. The ensemble's logits are the mean of those,
and it scores with the softmax rule. Its ``p_fake`` is therefore ``sigmoid`` of the mean of the
members' fake log-odds (logit averaging, the usual ensemble of transfer attacks), and for a
matrix of softmax detectors the logits are literally the mean of the members' logits.

``features`` (which the statistical attacks match) is the concatenation of the members' pooled
features: there is no common feature space to average in.

Inside the runner the set made for target ``t`` is addressed as the internal source
``ensemble_set(t)`` (its shard folder); the records call its rows ``source == "ensemble"``.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.detector_contract import check_logits
from bench.types import FAKE, Detector

ENSEMBLE = "ensemble"  # the records' source label of the ensemble row
ENSEMBLE_MODES = ("leave-one-out",)
_SET_PREFIX = f"{ENSEMBLE}-for-"  # internal source name of the set made for one target


def ensemble_set(target: str) -> str:
    """The internal source name (and shard folder) of the ensemble set made for ``target``."""
    return f"{_SET_PREFIX}{target}"


def left_out(source: str) -> str | None:
    """The target an ensemble set was made for, or None when ``source`` is a detector."""
    return source[len(_SET_PREFIX):] if source.startswith(_SET_PREFIX) else None


def reserved_label(label: str) -> bool:
    """Whether a detector label would collide with the ensemble's names."""
    return label == ENSEMBLE or label.startswith(_SET_PREFIX)


def adversarial_sets(sources: list[str], targets: list[str], ensemble: str | None) -> list[tuple[str, str, list[str]]]:
    """Every adversarial set of a run as (records' source, internal source, targets scoring it):
    each source detector's set is scored on every target; the ensemble set made for ``t`` on ``t``
    alone. The ensemble sets come last, so the ensemble row comes last in every view."""
    sets = [(source, source, list(targets)) for source in sources]
    if ensemble:
        sets += [(ENSEMBLE, ensemble_set(t), [t]) for t in targets]
    return sets


def softmax_form(logits: torch.Tensor, rule: str) -> torch.Tensor:
    """``logits`` (B,2) rewritten so that ``softmax(.)[:, 1]`` is the member's ``p_fake`` under its
    ``rule``: unchanged for "softmax", ``[0, z_fake]`` for "sigmoid". In fp32."""
    logits = logits.float()
    if rule == "sigmoid":
        fake = logits[:, FAKE:FAKE + 1]
        return torch.cat([torch.zeros_like(fake), fake], dim=1)
    return logits


class LeaveOneOutEnsemble(Detector):
    """The surrogate an attack runs against for target ``left_out``: ``forward(x01)`` is the mean of
    the other detectors' logits in softmax form (see the module docstring). Stateless, like every
    detector; the members are the run's own (shared) modules, each doing its own preprocessing."""

    p_fake_rule = "softmax"

    def __init__(self, members: dict[str, nn.Module], left_out: str):
        super().__init__()
        if not members:
            raise ValueError(f"the ensemble for {left_out!r} has no members; it needs another detector")
        self.labels = list(members)  # a ModuleDict would refuse labels with a dot
        self.members = nn.ModuleList(members.values())
        self.left_out = left_out
        # detector_name() reads arch["name"]: messages from inside an attack name the ensemble
        self.arch = {"name": f"{ENSEMBLE} for {left_out} ({' + '.join(members)})"}
        self.eval()  # detectors are always evaluated in eval(); the members already are

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        forms = [softmax_form(check_logits(label, member(x01), x01.shape[0]), getattr(member, "p_fake_rule", "softmax"))
                 for label, member in zip(self.labels, self.members)]
        return torch.stack(forms).mean(dim=0)

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.features(x01).flatten(1).float() for member in self.members], dim=1)


def leave_one_out(detectors: dict[str, nn.Module], target: str) -> LeaveOneOutEnsemble:
    """The ensemble of every detector in ``detectors`` except ``target``."""
    return LeaveOneOutEnsemble({label: d for label, d in detectors.items() if label != target}, target)

"""Where published detector checkpoints come from, as data: one ``CheckpointSource`` per
(family, source), kept apart from the architectures (timm's pretrained-config idea).

Each entry says how the publisher's code writes the file and how its own code reads images and
scores: the container to unwrap, the key prefixes to drop (weights the forward never reads) and to
rename onto our module names, the input size and mean/std, and the rule that turns logits into
p_fake. A family exposes every source of its own as a preset of the same name
(``create_detector("recce", preset="official", checkpoint=FILE)``), built by ``source_presets``.
The facts and their upstream references are in /work/shared/reference/DETECTORS.md and in the
layouts' ``checkpoint_format``; docs/detectors.md lists the same table for users.

Loading (``detectors.checkpoints.load_into(..., source=)``): unwrap the container, strip DDP
``module.``, drop, rename, then the usual strict fit. A file that fits no preset of its family is
refused with one line naming the closest preset and its first differing keys.

A family opts in with ``presets={..., **source_presets(FAMILY, {SOURCE: arch kwargs})}`` on its
``register_detector`` and a factory that goes through ``build_detector`` (which takes ``source=``
off the kwargs, loads with the source's rules and sets the detector's ``p_fake_rule``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ARTIFACT_ERASER = "artifact-eraser"
DEEPFAKEBENCH = "deepfakebench"
OFFICIAL = "official"

SOFTMAX = "softmax"  # p_fake = softmax(logits)[:, 1] (a one-logit head is [0, z]: sigmoid(z))
SIGMOID = "sigmoid"  # p_fake = sigmoid(logits[:, 1]): Artifact-Eraser's RECCE scores each logit alone


@dataclass(frozen=True)
class CheckpointSource:
    family: str
    source: str
    writer: str  # which code writes the file, and its name there
    container: tuple[str, ...] = ()  # keys to descend through, outermost first; () = a bare state dict
    drop: tuple[str, ...] = ()  # key prefixes (as the file spells them) that the forward never reads
    rename: tuple[tuple[str, str], ...] = ()  # (file prefix, our prefix), first match wins
    input_size: int = 256
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    p_fake: str = SOFTMAX
    arch: Mapping[str, Any] = field(default_factory=dict)  # architecture kwargs of the family

    @property
    def name(self) -> str:
        return f"{self.family} preset={self.source!r}"

    def preset(self) -> dict[str, Any]:
        """The kwargs of the family's preset of the same name."""
        return {"source": self.source, "input_size": self.input_size, "mean": self.mean, "std": self.std,
                **self.arch}


_AE_SNAPSHOT = "Artifact-Eraser classifiers/train_{}.py: torch.save(model.state_dict()) to snap/<name>_<iteration>.pth"
_DFB_RELEASE = ("DeepfakeBench release v1.0.1 {}_best.pth, or training/train.py's ckpt_best.pth "
                "(torch.save(detector.state_dict()))")

SOURCES: tuple[CheckpointSource, ...] = (
    # -- EfficientNet ------------------------------------------------------------------------
    CheckpointSource(
        "efficientnet_b7", ARTIFACT_ERASER, _AE_SNAPSHOT.format("efficient"),
        drop=("encoder.classifier.",),  # timm's 1000-way ImageNet head, never run
        rename=(("fc.", "net.classifier."), ("encoder.", "net.")),
        arch={"variant": "tf_efficientnet_b7"}),
    CheckpointSource(
        "efficientnet_b4", DEEPFAKEBENCH, _DFB_RELEASE.format("effnb4"),
        # lukemelas key names -> timm's: the family's layout adapter (deepfakebench_keys)
        arch={"variant": "deepfakebench_b4"}),
    # -- Xception ----------------------------------------------------------------------------
    CheckpointSource(
        "xception", ARTIFACT_ERASER, _AE_SNAPSHOT.format("xception"),
        rename=(("last_linear.", "net.fc."), ("", "net."))),
    CheckpointSource(
        "xception", DEEPFAKEBENCH, _DFB_RELEASE.format("xception"),
        drop=("backbone.adjust_channel.",),  # built in every mode, run only in others than 'original'
        rename=(("backbone.last_linear.", "net.fc."), ("backbone.", "net."))),
    # -- MAT (EfficientNet-B4, a1_b5_b2); the architecture kwargs are mat.py's --------------------
    CheckpointSource(
        "mat", ARTIFACT_ERASER, _AE_SNAPSHOT.format("mat") + "; its attack loads it with strict=False",
        drop=("net._fc.", "auxiliary_loss.")),
    CheckpointSource(
        "mat", OFFICIAL, "yoctta/multiple-attention train.py: checkpoints/<name>/ckpt_<epoch>.pth "
        "= {'logs', 'state_dict', 'optimizer_state', 'scheduler_state'}",
        container=("state_dict",), drop=("net._fc.", "auxiliary_loss."), input_size=380),
    # -- RECCE -------------------------------------------------------------------------------
    CheckpointSource(
        "recce", ARTIFACT_ERASER, _AE_SNAPSHOT.format("recce") + " (fc replaced by Linear(2048, 2))",
        drop=("encoder.fc.",), p_fake=SIGMOID, arch={"num_classes": 2}),
    CheckpointSource(
        "recce", DEEPFAKEBENCH, _DFB_RELEASE.format("recce"),
        drop=("backbone.", "model.encoder.fc."),  # RecceDetector builds an Xception it never runs
        rename=(("model.", ""),), arch={"num_classes": 2}),
    CheckpointSource(
        "recce", OFFICIAL, "VISION-SJTU/RECCE trainer: best_model_<step>.bin / latest_model.bin = "
        "{'step', 'best_step', 'best_metric', 'eval_metric', 'model', 'optimizer', 'scheduler'}; "
        "inference.py also takes the bare state dict",
        container=("model",), drop=("encoder.fc.",), input_size=299, arch={"num_classes": 1}),
)


def sources_of(family: str) -> dict[str, CheckpointSource]:
    return {s.source: s for s in SOURCES if s.family == family}


def get_source(family: str, source: str) -> CheckpointSource:
    from bench.errors import UserError

    known = sources_of(family)
    if source not in known:
        raise UserError(f"{family} has no checkpoint source {source!r}; known: {', '.join(known) or 'none'}")
    return known[source]


def source_presets(family: str, arch: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``{source: preset kwargs}`` for a family's registration; ``arch`` adds architecture kwargs
    per source that the family keeps in its own module (MAT's configuration)."""
    arch = arch or {}
    return {name: {**src.preset(), **arch.get(name, {})} for name, src in sources_of(family).items()}


def describe_sources() -> list[str]:
    """One line per (family, source), for ``bench list``."""
    lines = []
    for s in SOURCES:
        container = f"{{{', '.join(repr(k) for k in s.container)}: ...}}" if s.container else "bare state dict"
        dropped = f"; drops {', '.join(p + '*' for p in s.drop)}" if s.drop else ""
        p_fake = "sigmoid(logit[1])" if s.p_fake == SIGMOID else "softmax[1]"
        lines.append(f"{s.family:<16} preset={s.source:<16} {container}{dropped}; {s.input_size} px; "
                     f"p_fake={p_fake} | {s.writer}")
    return lines

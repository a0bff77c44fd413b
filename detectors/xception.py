"""Xception detector: timm's ``legacy_xception`` (the Cadene-style network FaceForensics++,
RECCE and DeepfakeBench use) with a 2-way [real, fake] head.

The network is built from timm's legacy-Xception blocks with timm's module names (the state dict
equals ``timm.create_model("legacy_xception", num_classes=2)`` key for key at full size), plus
``width`` and ``middle_blocks`` options for reduced demo models. Checkpoint layouts: ours
(``net.*``), timm's (``fc``), Cadene's (``last_linear``, 2-D pointwise kernels), FaceForensics++
(``model.last_linear.1`` behind dropout), each optionally under ``module.``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.registry import register_detector
from bench.types import Detector
from detectors._backbones import XceptionNet, backbone_weights_file, cadene_pointwise_fix
from detectors.checkpoints import add_prefix, build_detector, chain, load_backbone_weights, rename_prefix
from detectors.sources import source_presets

TINY = {"width": 0.125, "middle_blocks": 1, "input_size": 64}


def xception_layout_adapters(prefix: str) -> list:
    """Adapters from timm / Cadene / FaceForensics++ Xception keys to ``prefix`` + timm names."""
    heads = [lambda s: s, rename_prefix("last_linear.1.", "fc."), rename_prefix("last_linear.", "fc.")]
    return [chain(h, cadene_pointwise_fix, add_prefix(prefix)) for h in heads]


class XceptionDetector(Detector):
    def __init__(self, width: float = 1.0, middle_blocks: int = 8, input_size: int = 256,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 backbone_weights: str | None = None, pretrained: bool = False):
        super().__init__(input_size=input_size, mean=mean, std=std)
        self.net = XceptionNet(num_classes=2, width=width, middle_blocks=middle_blocks)
        weights = backbone_weights_file(backbone_weights, pretrained, "legacy_xception.tf_in1k")
        if weights:
            load_backbone_weights(self.net, weights)

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self.net.pool(self.net.forward_features(xn))

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.embed(xn))

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.net.bn4]  # last conv of the exit flow, 1/32 resolution

    def checkpoint_adapters(self):
        return xception_layout_adapters("net.")


@register_detector("xception", version="1", accepts=(XceptionDetector,), presets={"tiny": TINY, **source_presets("xception")})
def xception(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
             source: str | None = None,
             **kwargs) -> XceptionDetector:
    """timm legacy_xception (Cadene layout) with a 2-way head."""
    return build_detector("xception", XceptionDetector, checkpoint, trust_checkpoint, strict, {**kwargs, "source": source})

"""EfficientNet detectors: a timm EfficientNet (B4 by default) with a 2-way [real, fake] head.

Families ``efficientnet_b4`` and ``efficientnet_b7``. Variants: ``efficientnet_b4``,
``tf_efficientnet_b4``, ``tf_efficientnet_b7`` (= ``tf_efficientnet_b7_ns``, the Artifact-Eraser
"efficient" detector; timm 1.0 keeps the Noisy-Student weights as the ``.ns_jft_in1k`` tag) and
``deepfakebench_b4`` (DeepfakeBench's EfficientNet-B4 detector, whose checkpoints keep
efficientnet_pytorch's key names and padding; see deepfakebench_efficientnet.py).
``channel_multiplier`` / ``depth_multiplier`` shrink the network for demo models through the same
timm generator. Published files load through their source presets (detectors/sources.py); other
layouts: ours (``net.*``), a bare timm EfficientNet with its ``classifier`` replaced by
``Linear(F, 2)`` (optionally under ``model.`` / ``module.``), or a timm trunk plus a separate
``fc`` / ``last_linear`` / ``head`` / ``linear``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.errors import UserError
from bench.registry import register_detector
from bench.types import Detector
from detectors._backbones import backbone_weights_file, build_efficientnet, efficientnet_arch
from detectors.checkpoints import add_prefix, build_detector, chain, load_backbone_weights, rename_prefix
from detectors.deepfakebench_efficientnet import build_deepfakebench_b4, deepfakebench_keys
from detectors.sources import source_presets

DEEPFAKEBENCH = "deepfakebench_b4"

# 128 px: at 64 px the stride-2 stem of so small a net barely sees pixel-period artifacts
TINY = {"channel_multiplier": 0.25, "depth_multiplier": 0.2, "input_size": 128}


class EfficientNetDetector(Detector):
    def __init__(self, variant: str = "efficientnet_b4", channel_multiplier: float | None = None,
                 depth_multiplier: float | None = None, drop_rate: float = 0.0, input_size: int = 256,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 backbone_weights: str | None = None, pretrained: bool = False):
        super().__init__(input_size=input_size, mean=mean, std=std)
        self.variant = variant
        if variant == DEEPFAKEBENCH:
            if channel_multiplier is not None or depth_multiplier is not None:
                raise UserError(f"{DEEPFAKEBENCH} is the full B4 of DeepfakeBench's checkpoints; it takes no multipliers")
            self.net = build_deepfakebench_b4(2, drop_rate)
        else:
            self.net = build_efficientnet(variant, 2, channel_multiplier, depth_multiplier, drop_rate)
        weights = backbone_weights_file(backbone_weights, pretrained,
                                        efficientnet_arch("tf_efficientnet_b4" if variant == DEEPFAKEBENCH else variant)[1])
        if weights:
            load_backbone_weights(self.net, weights)

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(xn), pre_logits=True)

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(xn))

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.net.bn2]  # last conv block (conv_head + BN + SiLU), 1/32 resolution

    def checkpoint_adapters(self):
        # a bare timm EfficientNet, or a trunk with the head under another name
        heads = [rename_prefix(h, "classifier.") for h in ("fc.", "last_linear.", "head.", "linear.")]
        adapters = [add_prefix("net."), *(chain(h, add_prefix("net.")) for h in heads)]
        if self.variant == DEEPFAKEBENCH:
            depths = [len(stage) for stage in self.net.blocks]
            adapters.append(chain(lambda sd: deepfakebench_keys(sd, depths), add_prefix("net.")))
        return adapters


@register_detector("efficientnet_b4", version="1", accepts=(EfficientNetDetector,),
                   presets={"tiny": TINY, **source_presets("efficientnet_b4")})
def efficientnet_b4(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
                    source: str | None = None,
                    **kwargs) -> EfficientNetDetector:
    """timm EfficientNet-B4 (or tf_ B4, DeepfakeBench's B4) with a 2-way head."""
    return build_detector("efficientnet_b4", EfficientNetDetector, checkpoint, trust_checkpoint, strict, {**kwargs, "source": source})


@register_detector("efficientnet_b7", version="1", accepts=(EfficientNetDetector,), presets=source_presets("efficientnet_b7"))
def efficientnet_b7(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
                    source: str | None = None,
                    **kwargs) -> EfficientNetDetector:
    """timm tf_efficientnet_b7 (Noisy Student) with a 2-way head: Artifact-Eraser's "efficient"."""
    kwargs.setdefault("variant", "tf_efficientnet_b7")
    return build_detector("efficientnet_b7", EfficientNetDetector, checkpoint, trust_checkpoint, strict, {**kwargs, "source": source})

"""Backbones shared by the detector families: timm EfficientNets with adjustable width/depth,
an Xception built from timm's legacy-Xception blocks with adjustable width and middle-flow depth,
and the rule for ImageNet weights (given by path, or found in the local cache; never downloaded).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.xception import Block, SeparableConv2d
from torch import nn

from bench.errors import UserError

# -- EfficientNet --------------------------------------------------------------------------------
# timm 1.0 dropped the `_ns` model names: the Noisy-Student weights are the `.ns_jft_in1k` tag.
EFFICIENTNET_ALIASES = {"tf_efficientnet_b7_ns": "tf_efficientnet_b7.ns_jft_in1k",
                        "tf_efficientnet_b4_ns": "tf_efficientnet_b4.ns_jft_in1k"}
# (channel_multiplier, depth_multiplier) of the architectures we offer
EFFICIENTNET_SCALING = {"efficientnet_b4": (1.4, 1.8), "tf_efficientnet_b4": (1.4, 1.8),
                        "tf_efficientnet_b7": (2.0, 3.1), "efficientnet_b0": (1.0, 1.0)}


def efficientnet_arch(variant: str) -> tuple[str, str]:
    """``variant`` -> (timm architecture, timm name with weight tag for the cache lookup)."""
    full = EFFICIENTNET_ALIASES.get(variant, variant)
    arch = full.split(".", 1)[0]
    if arch not in EFFICIENTNET_SCALING:
        raise UserError(f"unknown EfficientNet variant {variant!r}; choose one of "
                        f"{', '.join(sorted([*EFFICIENTNET_SCALING, *EFFICIENTNET_ALIASES]))}")
    return arch, full


def build_efficientnet(variant: str, num_classes: int, channel_multiplier: float | None = None,
                       depth_multiplier: float | None = None, drop_rate: float = 0.0) -> nn.Module:
    """A timm EfficientNet (random init). The multipliers replace the variant's own scaling
    (B4: 1.4 / 1.8) for reduced demo models; the code path is the same timm generator."""
    arch, _ = efficientnet_arch(variant)
    if channel_multiplier is None and depth_multiplier is None:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    from timm.models._efficientnet_builder import BN_EPS_TF_DEFAULT
    from timm.models.efficientnet import _gen_efficientnet  # the generator behind every B0-B8 name

    cm0, dm0 = EFFICIENTNET_SCALING[arch]
    extra: dict[str, Any] = {}
    if arch.startswith("tf_"):  # what timm's tf_* entry points add: TF batch-norm eps + 'same' padding
        extra = {"bn_eps": BN_EPS_TF_DEFAULT, "pad_type": "same"}
    return _gen_efficientnet(arch, channel_multiplier=channel_multiplier or cm0,
                             depth_multiplier=depth_multiplier or dm0, pretrained=False,
                             num_classes=num_classes, drop_rate=drop_rate, **extra)


# -- Xception ------------------------------------------------------------------------------------
class XceptionNet(nn.Module):
    """Chollet's Xception with the module names of timm's ``legacy_xception`` (Cadene layout), so
    that at ``width=1, middle_blocks=8`` its state dict equals timm's key for key. ``width``
    scales every channel count; ``middle_blocks`` sets the middle-flow depth (8 in the paper)."""

    def __init__(self, num_classes: int = 2, width: float = 1.0, middle_blocks: int = 8):
        super().__init__()

        def ch(c: int) -> int:
            return max(8, round(c * width))

        self.middle_blocks = int(middle_blocks)
        self.conv1 = nn.Conv2d(3, ch(32), 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(ch(32))
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(ch(32), ch(64), 3, bias=False)
        self.bn2 = nn.BatchNorm2d(ch(64))
        self.act2 = nn.ReLU(inplace=True)
        self.block1 = Block(ch(64), ch(128), 2, 2, start_with_relu=False)
        self.block2 = Block(ch(128), ch(256), 2, 2)
        self.block3 = Block(ch(256), ch(728), 2, 2)
        for i in range(self.middle_blocks):
            setattr(self, f"block{4 + i}", Block(ch(728), ch(728), 3, 1))
        setattr(self, f"block{4 + self.middle_blocks}", Block(ch(728), ch(1024), 2, 2, grow_first=False))
        self.conv3 = SeparableConv2d(ch(1024), ch(1536), 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(ch(1536))
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(ch(1536), ch(2048), 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(ch(2048))
        self.act4 = nn.ReLU(inplace=True)
        self.num_features = ch(2048)
        self.middle_channels = ch(728)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def num_blocks(self) -> int:
        return 4 + self.middle_blocks

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))

    def blocks(self, x: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Run blocks ``first..last`` (1-based, inclusive)."""
        for i in range(first, last + 1):
            x = getattr(self, f"block{i}")(x)
        return x

    def exit_flow(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act3(self.bn3(self.conv3(x)))
        return self.act4(self.bn4(self.conv4(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_flow(self.blocks(self.stem(x), 1, self.num_blocks))

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.forward_features(x)))


def cadene_pointwise_fix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cadene's converted Keras weights store separable pointwise kernels as 2-D matrices."""
    return {k: (v[..., None, None] if k.endswith("pointwise.weight") and v.dim() == 2 else v)
            for k, v in sd.items()}


# -- ImageNet weights: given, or already cached; never downloaded --------------------------------
def cached_pretrained_file(timm_name: str) -> Path | None:
    """The locally cached weight file timm would use for ``timm_name``, if any."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if candidate.is_file():
            return candidate
    return None


def backbone_weights_file(backbone_weights: str | None, pretrained: bool, timm_name: str) -> str | None:
    """Resolve where ImageNet weights come from: an explicit path, the local cache, or nowhere."""
    if backbone_weights:
        return str(backbone_weights)
    if not pretrained:
        return None
    found = cached_pretrained_file(timm_name)
    if found is None:
        raise UserError(f"pretrained=True but no cached weights for {timm_name!r} (nothing is "
                        "downloaded); pass backbone_weights=PATH to a local weight file")
    return str(found)

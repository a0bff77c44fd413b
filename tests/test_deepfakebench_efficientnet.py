"""DeepfakeBench's EfficientNet-B4 checkpoints: built with efficientnet_pytorch exactly as
DeepfakeBench builds its detector, saved as it saves them, loaded by `efficientnet_b4` preset
`deepfakebench`; the logits must agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from efficientnet_pytorch import EfficientNet
from torch import nn

from bench.registry import create_detector
from detectors.deepfakebench_efficientnet import FixedPadConv2d, static_same_pad


class DeepfakeBenchEfficientB4(nn.Module):
    """The module tree DeepfakeBench's efficientnetb4 detector saves: backbone.efficientnet
    (lukemelas B4, unpadded stem, no _fc) and backbone.last_layer on the pooled features."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.efficientnet = EfficientNet.from_name("efficientnet-b4")
        self.backbone.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
        self.backbone.efficientnet._fc = nn.Identity()
        self.backbone.last_layer = nn.Linear(1792, 2)

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        features = self.backbone.efficientnet.extract_features(xn)
        return self.backbone.last_layer(F.adaptive_avg_pool2d(features, 1).flatten(1))


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Trained-looking BN statistics, so that a wrong eps or a skipped BN shows in the logits."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.05)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_static_pads_are_lukemelas_pads_for_380_px():
    # the stride-2 depthwise convs of B4 meet 190, 95, 48 and 24 px at the nominal 380 px input
    assert [static_same_pad(190, 3, 2), static_same_pad(95, 5, 2), static_same_pad(48, 3, 2),
            static_same_pad(24, 5, 2)] == [(0, 1), (2, 2), (0, 1), (1, 2)]
    det = create_detector("efficientnet_b4", preset="deepfakebench")
    pads = [m.fixed_pad[:2] for m in det.net.modules() if isinstance(m, FixedPadConv2d)]
    assert pads == [(0, 1), (2, 2), (0, 1), (1, 2)]
    assert det.net.conv_stem.padding == (0, 0)


def test_deepfakebench_checkpoint_gives_deepfakebench_logits(tmp_path):
    torch.manual_seed(0)
    reference = DeepfakeBenchEfficientB4()
    _randomise_batchnorm(reference, torch.Generator().manual_seed(1))
    reference.eval()
    # DDP-trained checkpoints carry `module.`; DeepfakeBench saves the bare state dict
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, tmp_path / "effnb4_best.pth")

    det = create_detector("efficientnet_b4", preset="deepfakebench", checkpoint=str(tmp_path / "effnb4_best.pth")).eval()
    xn = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # the 8x8x1792 feature maps (a random deep net's pooled logits barely depend on the input)
        want, got = reference.backbone.efficientnet.extract_features(xn), det.net.forward_features(xn)
        scale = want.abs().max().item()
        assert got.shape == want.shape == (2, 1792, 8, 8) and scale > 0.1
        assert (got - want).abs().max() <= 1e-4 * scale
        assert (det.classify(xn) - reference(xn)).abs().max() <= 1e-4
        # timm's tf_ pads (computed on the real 127 px input) would not match: the fixed pads matter
        first = next(m for m in det.net.modules() if isinstance(m, FixedPadConv2d))
        first.fixed_pad = (1, 1, 1, 1)
        assert (det.net.forward_features(xn) - want).abs().max() > 1e-2 * scale  # 100x the tolerance

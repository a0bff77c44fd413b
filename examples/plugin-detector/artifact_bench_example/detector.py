"""A deliberately simple detector: forgeries in the toy data are over-saturated, so the
logit is a scaled colour saturation. It follows the full Detector contract, so the harness can
attack it, transfer to it and explain it like any built-in: its saturation map is the layer
Grad-CAM reads, so the CAM shows where the image is most saturated."""

import torch
from torch import nn

from bench.types import Detector, two_way


class SaturationDetector(Detector):
    def __init__(self, threshold: float = 0.3, scale: float = 10.0, input_size: int = 64):
        super().__init__(input_size=input_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        # Parameters, not plain floats: Grad-CAM (and `.to(device)`) find the model through them.
        self.threshold = nn.Parameter(torch.tensor(float(threshold)), requires_grad=False)
        self.scale = nn.Parameter(torch.tensor(float(scale)), requires_grad=False)
        self.spread = nn.Identity()  # the (B,1,H,W) saturation map, a named layer for Grad-CAM

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        spread = self.spread(xn.amax(dim=1, keepdim=True) - xn.amin(dim=1, keepdim=True))
        return spread.mean(dim=(2, 3))

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return two_way(self.scale * (self.embed(xn)[:, 0] - self.threshold))

    def cam_target_layers(self):
        return [self.spread]


def saturation_detector(checkpoint=None, trust_checkpoint=False, **kwargs) -> SaturationDetector:
    """Example plugin: mean colour saturation (no weights)."""
    return SaturationDetector(**kwargs).eval()

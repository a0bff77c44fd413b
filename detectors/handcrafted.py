"""Hand-built frequency-artifact detectors: no training, fully differentiable, exactly known.

They score the energy of a fixed high-pass filter response, the up-sampling trace that GAN
and blending forgeries leave. The harness tests use them as small source/target detectors whose
behaviour is known in closed form; they are also honest baselines on any dataset.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import UserError
from bench.registry import register_detector
from bench.types import Detector, two_way

_KERNELS = {
    # responds to the period-2 (Nyquist) checkerboard pattern
    "checkerboard": [[1.0, -1.0], [-1.0, 1.0]],
    # the discrete Laplacian: broadband high-frequency energy
    "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}
# (threshold, scale) per kernel: the threshold sits between clean faces' energy (~0.01) and that
# of a faint Nyquist artifact of amplitude 0.06 (~0.45 checkerboard, ~0.9 Laplacian).
_DEFAULTS = {"checkerboard": (0.2, 20.0), "laplacian": (0.4, 10.0)}


class FilterEnergy(Detector):
    """logit_fake = scale * (mean |filter * x| - threshold); a single logit exposed as [0, z].

    Computed on the normalised input, averaged over channels; the filter is a frozen conv layer,
    which is also the Grad-CAM target layer.
    """

    def __init__(self, kernel: str = "checkerboard", threshold: float | None = None,
                 scale: float | None = None, input_size: int = 64, **norm):
        super().__init__(input_size=input_size, **norm)
        if kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {sorted(_KERNELS)}")
        weight = torch.tensor(_KERNELS[kernel]).expand(3, 1, -1, -1).clone()
        self.filter = nn.Conv2d(3, 3, weight.shape[-1], groups=3, bias=False)
        self.filter.weight.data.copy_(weight)
        self.filter.weight.requires_grad_(False)
        default_threshold, default_scale = _DEFAULTS[kernel]
        self.threshold = float(default_threshold if threshold is None else threshold)
        self.scale = float(default_scale if scale is None else scale)

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self.filter(xn).abs().mean(dim=(2, 3))  # (B,3): per-channel filter energy

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        z = self.scale * (self.embed(xn).mean(dim=1) - self.threshold)
        return two_way(z)

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.filter]


@register_detector("checkerboard_energy", version="1", accepts=(FilterEnergy,))
def checkerboard_energy(**kwargs) -> FilterEnergy:
    """Energy of the 2x2 checkerboard filter (Nyquist up-sampling trace); no weights."""
    return _build("checkerboard", kwargs)


def _build(kernel: str, kwargs: dict) -> FilterEnergy:
    if kwargs.pop("checkpoint", None):
        raise UserError(f"{kernel}_energy has no weights; remove its 'checkpoint' option")
    kwargs.pop("trust_checkpoint", None)
    return FilterEnergy(kernel=kernel, **kwargs).eval()


@register_detector("laplacian_energy", version="1", accepts=(FilterEnergy,))
def laplacian_energy(**kwargs) -> FilterEnergy:
    """Energy of the Laplacian (broadband high-frequency trace); no weights."""
    return _build("laplacian", kwargs)

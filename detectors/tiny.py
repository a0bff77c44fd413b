"""A tiny CNN detector for tests, benchmarks of the harness itself, and quick experiments."""

from __future__ import annotations

from torch import nn

from bench.registry import register_detector
from bench.types import Detector


class TinyCNN(Detector):
    """Three strided conv blocks, global average pooling and a linear head."""

    def __init__(self, width: int = 16, input_size: int = 64, seed: int | None = None, **norm):
        super().__init__(input_size=input_size, **norm)
        if seed is not None:  # reproducible random weights without touching the global RNG
            import torch

            state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width * 2, width * 4, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width * 4, 2)
        if seed is not None:
            torch.random.set_rng_state(state)

    def embed(self, xn):
        return self.pool(self.body(xn)).flatten(1)

    def classify(self, xn):
        return self.head(self.embed(xn))

    def cam_target_layers(self):
        return [self.body[-2]]


@register_detector("tiny_cnn", version="1", accepts=(TinyCNN,))
def tiny_cnn(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
             **kwargs) -> TinyCNN:
    """Tiny 3-layer CNN (tests and harness benchmarks)."""
    from detectors.checkpoints import build_detector

    return build_detector("tiny_cnn", TinyCNN, checkpoint, trust_checkpoint, strict, kwargs)

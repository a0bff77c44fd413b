"""A small detector trained for a few seconds on the synthetic dataset, shared by the attack tests.

Not a test module (no ``test_`` prefix); the test files wrap ``trained_tiny()`` in module-scoped
fixtures. Training is deterministic and cached per process.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from bench.data.synthetic import SyntheticFaces
from detectors.tiny import TinyCNN


def _batch(ds: SyntheticFaces) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [ds[i] for i in range(len(ds))]
    return torch.stack([s.image01 for s in samples]), torch.tensor([s.label for s in samples])


@functools.lru_cache(maxsize=1)
def trained_tiny() -> TinyCNN:
    """TinyCNN (width 8, 32 px) fitted to the synthetic real/fake split; >= 95 % train accuracy."""
    x, y = _batch(SyntheticFaces(n=64, size=32, split="train", seed=3, artifact=0.03))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyCNN(width=8, input_size=32)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.95, f"tiny detector failed to train (accuracy {accuracy:.2f})"
    return model


@functools.lru_cache(maxsize=1)
def held_out_batches() -> tuple[torch.Tensor, torch.Tensor]:
    """(fakes, reals): 8 held-out fakes the detector calls fake, and 8 reals of the same shape."""
    x, y = _batch(SyntheticFaces(n=32, size=32, split="test", seed=3, artifact=0.03))
    return x[y == 1][:8].clone(), x[y == 0][:8].clone()


# Fixtures shared by the attack test modules (imported there by name).
FAKE_LABELS = torch.ones(8, dtype=torch.long)


@pytest.fixture(scope="module")
def detector() -> TinyCNN:
    return trained_tiny()


@pytest.fixture(scope="module")
def fakes() -> torch.Tensor:
    return held_out_batches()[0]


@pytest.fixture(scope="module")
def batches() -> tuple[torch.Tensor, torch.Tensor]:
    return held_out_batches()


# Heads that mask a detector's gradient or saturate its softmax (the attack-health tests).
class RoundedHead(nn.Module):
    """Gradient masking by quantised logits: same decisions, zero input gradient everywhere."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.round(self.inner(x01) * 100) / 100


class DetachedHead(nn.Module):
    """A ``.detach()`` inside the detector: no gradient path to the input at all."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.inner(x01).detach()


class OverconfidentHead(nn.Module):
    """Logits scaled by 1e4: float32 softmax is exactly 0 or 1."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.inner(x01) * 1e4

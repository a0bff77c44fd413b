"""benchmarks/flops.py: the eraser's FLOP count behind the "fraction of bf16 peak" line."""

from __future__ import annotations

import torch

from bench.models.e4e import Encoder4Editing
from bench.models.latent import LatentStack
from bench.models.stylegan2 import Generator
from benchmarks.flops import bf16_peak_tflops, eraser_flops
from detectors.tiny import TinyCNN


def test_eraser_flops_add_up_and_scale_with_the_batch():
    torch.manual_seed(0)
    g = Generator(64, style_dim=64, n_mlp=2, channel_max=32).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=64, style_dim=64, units=(1, 1, 1, 1),
                        widths=(16, 16, 32, 32)).eval()
    stack = LatentStack(e, g, g.mean_latent(100))
    det = TinyCNN(width=8, input_size=64, seed=1).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    one, two = eraser_flops(stack, det, x[:1], steps=5), eraser_flops(stack, det, x, steps=5)
    assert one["total"] == one["encoder"] + 5 * one["step"] + one["render"]
    assert {k: 2 * v for k, v in one.items()} == two  # every counted op is linear in the batch
    # a step is the render plus the (small) detector, forward and input-gradient backward: ~2x a render
    assert 1.9 < one["step"] / one["render"] < 2.6, one
    # hand count of the generator's 3x3 convs (32 channels everywhere at channel_max=32): the 4 px
    # conv, then per resolution r = 8..64 a transposed 3x3 from r/2 and a 3x3 at r; 2 FLOPs a MAC
    mac3x3 = 32 * 32 * 9
    convs = 2 * mac3x3 * (4 * 4 + sum((r // 2) ** 2 + r ** 2 for r in (8, 16, 32, 64)))
    assert convs == 125_632_512
    # the rest (FIR blurs, toRGB 1x1s, skip upsampling, mapping and modulation) adds a few per cent
    assert convs < one["render"] < 1.1 * convs, one

def test_bf16_peaks_by_device_name():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA H200") == 989.4
    assert bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak_tflops("Tesla T4") is None

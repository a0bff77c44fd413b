"""Transfer-enhanced L-inf baselines ``difgsm``, ``tifgsm``, ``vmifgsm``, ``sinifgsm``: torchattacks
3.5.1 ``DIFGSM``, ``TIFGSM``, ``VMIFGSM``, ``SINIFGSM`` under the same contract as ``pgd``.

Same parameter names and units as ``attacks/pixel.py`` (``eps``, ``step`` = torchattacks'
``alpha``, ``steps``, [0,1] images) and the same preset families: ``paper-<ds>`` (L-inf bound 0.05,
the paper's step, 8 steps) and ``official-<ds>`` (the official script's bound 12.5/255 and step,
8 steps). Presets set only the budget; the algorithm is always torchattacks'. Each method's own
knobs keep torchattacks' defaults.

Randomness: DI and TI draw the resize/pad of every step, VMI its neighbours, from the global RNG,
so those run on a forked global RNG seeded from the caller's generator (``uses_rng``).
"""

from __future__ import annotations

import torchattacks

from attacks._budgets import step_presets
from attacks.pixel import TorchattacksAttack
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack

TI_KERNELS = ("gaussian", "linear", "uniform")


def _check_input_diversity(name: str, resize_rate: float, diversity_prob: float) -> None:
    # torchattacks draws the new side from [W * rate, W) (or [W, W * rate)): an empty range at rate 1
    if resize_rate <= 0 or resize_rate == 1:
        raise UserError(f"{name}: resize_rate must be > 0 and != 1 (got {resize_rate}).")
    if not 0 <= diversity_prob <= 1:
        raise UserError(f"{name}: diversity_prob must be in [0, 1] (got {diversity_prob}).")


@register_attack("difgsm", version="1", threat_model="linf", presets=step_presets())
def difgsm(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10, decay: float = 0.0,
           resize_rate: float = 0.9, diversity_prob: float = 0.5, random_start: bool = False) -> Attack:
    """DI-FGSM (torchattacks): random resize-and-pad of the input at each step; decay>0 = M-DI-FGSM."""
    _check_input_diversity("difgsm", resize_rate, diversity_prob)
    return TorchattacksAttack(
        lambda model: torchattacks.DIFGSM(model, eps=eps, alpha=step, steps=steps, decay=decay,
                                          resize_rate=resize_rate, diversity_prob=diversity_prob,
                                          random_start=random_start),
        eps=eps, steps=steps, uses_rng=True)


@register_attack("tifgsm", version="1", threat_model="linf", presets=step_presets())
def tifgsm(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10, decay: float = 0.0,
           kernel_name: str = "gaussian", len_kernel: int = 15, nsig: float = 3,
           resize_rate: float = 0.9, diversity_prob: float = 0.5, random_start: bool = False) -> Attack:
    """TI-FGSM (torchattacks): the gradient is smoothed by a depthwise kernel; includes DI."""
    _check_input_diversity("tifgsm", resize_rate, diversity_prob)
    if kernel_name not in TI_KERNELS:
        raise UserError(f"tifgsm: unknown kernel_name {kernel_name!r}; use one of {', '.join(TI_KERNELS)}.")
    if len_kernel < 1:
        raise UserError(f"tifgsm: len_kernel must be >= 1 (got {len_kernel}).")
    return TorchattacksAttack(
        lambda model: torchattacks.TIFGSM(model, eps=eps, alpha=step, steps=steps, decay=decay,
                                          kernel_name=kernel_name, len_kernel=len_kernel, nsig=nsig,
                                          resize_rate=resize_rate, diversity_prob=diversity_prob,
                                          random_start=random_start),
        eps=eps, steps=steps, uses_rng=True)


@register_attack("vmifgsm", version="1", threat_model="linf", presets=step_presets())
def vmifgsm(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10, decay: float = 1.0,
            samples: int = 5, beta: float = 1.5) -> Attack:
    """VMI-FGSM (torchattacks): MI-FGSM with gradient-variance tuning over ``samples`` neighbours."""
    if samples < 1:
        raise UserError(f"vmifgsm: samples (torchattacks' N) must be >= 1 (got {samples}).")
    return TorchattacksAttack(
        lambda model: torchattacks.VMIFGSM(model, eps=eps, alpha=step, steps=steps, decay=decay,
                                           N=samples, beta=beta),
        eps=eps, steps=steps, uses_rng=True, gradients_per_step=1 + samples)


@register_attack("sinifgsm", version="1", threat_model="linf", presets=step_presets())
def sinifgsm(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10, decay: float = 1.0,
             copies: int = 5) -> Attack:
    """SI-NI-FGSM (torchattacks): Nesterov look-ahead, gradient averaged over ``copies`` scalings."""
    if copies < 1:
        raise UserError(f"sinifgsm: copies (torchattacks' m) must be >= 1 (got {copies}).")
    return TorchattacksAttack(
        lambda model: torchattacks.SINIFGSM(model, eps=eps, alpha=step, steps=steps, decay=decay, m=copies),
        eps=eps, steps=steps, gradients_per_step=copies)

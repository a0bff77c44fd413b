"""StatAttack and MStatAttack: degrade fakes until their detector features match real ones.

StatAttack (Hou et al., "Evading DeepFake Detectors via Adversarial Statistical Consistency",
CVPR 2023; official code github tobuta/evadingfakedetector) applies, in this order,

1. exposure: ``x * exp(B)``, ``B`` a degree-11 polynomial bias field (78 coefficients, one field
   for all channels) warped by a coarse flow field at H/8 x W/8;
2. blur: a per-pixel adaptive 3x3 Gaussian, inverse width ``s`` initialised so that each image's
   s-map has L2 norm 100 (nearly a box blur at first, sharpening as ``s`` grows);
3. noise: additive, kept within +-4/255;

then clips to ``x +- 60/255`` and [0,1]. It minimises (no classification term)
``10 MMD(phi(adv), phi(real)) + 10 sum_i mean(B_i^2) + (10/64) ||grad flow||^2`` with ``phi`` the
detector's pooled penultimate features, by 10 sign steps on the momentum (decay 1.0) of per-sample
L1-normalised gradients, one learning rate per parameter group (noise 1/255, blur 0.1,
polynomial 0.1, flow 1e-3). As in the official code, the bias penalty is summed over the batch.

MStatAttack (no public code; re-implementation): ``blocks`` degradation blocks stacked, block k
applied to the output of block k-1 (each output clamped to [0,1]); the attacked image is the
softmax-weighted sum of the block outputs, the mixing logits (B,K) optimised with the others by
the same loss and update (learning rate ``lr_mix``), then the same clip.

Attack health (``bench/attack_health.py``): ``GRAD_ZERO`` / ``GRAD_NONFINITE`` look at a sample's
gradients over all its degradation parameters (zero when all of them are; there is no
classification term, so a zero gradient is a stall whatever the detector says); ``final_loss`` is
the batch loss of the last step, the same for every sample of the batch (MMD compares sets, it has
no per-sample value); ``SATURATED_START`` does not apply (the loss reads features, not
``p_fake``): 0.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks._common import frozen_eval
from attacks._degradations import adaptive_gaussian_blur, identity_grid, polynomial_basis, warped_bias_field
from attacks._mmd import multi_kernel_mmd
from bench.attack_health import AttackHealth, gradient_state
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector


class StatisticalConsistencyAttack(Attack):
    """StatAttack (``blocks=1``) and MStatAttack (``blocks=K``) under one update rule."""

    needs_reference = True

    def __init__(self, blocks: int = 1, steps: int = 10, eps: float = 60 / 255, noise_eps: float = 4 / 255,
                 degree: int = 11, flow_scale: int = 8, blur_norm: float = 100.0,
                 lr_noise: float = 1 / 255, lr_blur: float = 0.1, lr_poly: float = 0.1,
                 lr_flow: float = 1e-3, lr_mix: float = 0.1, lambda_mmd: float = 10.0,
                 lambda_bias: float = 10.0, lambda_flow: float = 10.0, decay: float = 1.0):
        if blocks < 1:
            raise UserError(f"statattack: blocks must be >= 1, got {blocks}.")
        self.blocks, self.steps, self.eps, self.noise_eps = int(blocks), int(steps), float(eps), float(noise_eps)
        self.degree, self.flow_scale, self.blur_norm = int(degree), int(flow_scale), float(blur_norm)
        self.lrs = {"noise": lr_noise, "blur": lr_blur, "poly": lr_poly, "flow": lr_flow, "mix": lr_mix}
        self.lambda_mmd, self.lambda_bias, self.lambda_flow = lambda_mmd, lambda_bias, lambda_flow
        self.decay = decay

    # -- parameters --------------------------------------------------------------------------
    def _init_params(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, h, w = x.shape
        n_coef = (self.degree + 1) * (self.degree + 2) // 2
        blur_init = self.blur_norm / (c * h * w) ** 0.5  # every s-map has L2 norm blur_norm
        coarse = (max(1, h // self.flow_scale), max(1, w // self.flow_scale))
        params = {}
        for k in range(self.blocks):
            params[f"noise{k}"] = torch.zeros_like(x)
            params[f"blur{k}"] = torch.full_like(x, blur_init)
            params[f"poly{k}"] = x.new_zeros(b, n_coef)
            params[f"flow{k}"] = x.new_zeros(b, *coarse, 2)
        if self.blocks > 1:
            params["mix"] = x.new_zeros(b, self.blocks)
        return params

    # -- forward model -----------------------------------------------------------------------
    def _degrade(self, x0: torch.Tensor, p: dict[str, torch.Tensor], basis: torch.Tensor,
                 grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacked batch and the summed smoothness penalties (bias field and flow)."""
        h, w = x0.shape[-2:]
        y, outputs, penalty = x0, [], x0.new_zeros(())
        for k in range(self.blocks):
            bias = warped_bias_field(p[f"poly{k}"], p[f"flow{k}"], basis, grid)
            y = y * torch.exp(bias)
            y = adaptive_gaussian_blur(y, p[f"blur{k}"])
            y = (y + p[f"noise{k}"]).clamp(0, 1)
            outputs.append(y)
            flow = p[f"flow{k}"]
            flow_rough = (flow[:, :, 1:] - flow[:, :, :-1]).pow(2).sum() + (flow[:, 1:] - flow[:, :-1]).pow(2).sum()
            penalty = penalty + self.lambda_bias * bias.pow(2).sum() / (h * w) \
                + self.lambda_flow / self.flow_scale ** 2 * flow_rough
        if self.blocks > 1:
            weights = torch.softmax(p["mix"], dim=1)
            y = sum(weights[:, k].view(-1, 1, 1, 1) * out for k, out in enumerate(outputs))
        adv = torch.minimum(torch.maximum(y, x0 - self.eps), x0 + self.eps).clamp(0, 1)
        return adv, penalty

    # -- the attack ----------------------------------------------------------------------------
    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        if reference is None or reference.shape != x01.shape:
            got = None if reference is None else tuple(reference.shape)
            raise UserError(f"statattack needs reference= a real batch shaped like the fakes "
                            f"{tuple(x01.shape)}, got {got}.")
        x0 = x01.detach()
        h, w = x0.shape[-2:]
        basis = polynomial_basis(h, w, self.degree, device=x0.device, dtype=x0.dtype)
        grid = identity_grid(h, w, device=x0.device, dtype=x0.dtype)[None].expand(x0.shape[0], -1, -1, -1)
        params = self._init_params(x0)
        momentum: dict[str, torch.Tensor] = {}
        health = AttackHealth(len(x0), x0.device)
        with frozen_eval(detector):
            with torch.no_grad():
                real_features = detector.features(reference.to(x0))
            for _ in range(self.steps):
                for t in params.values():
                    t.requires_grad_(True)
                with torch.autocast(x0.device.type, enabled=False):  # degradations in fp32
                    adv, penalty = self._degrade(x0, params, basis, grid)
                loss = self.lambda_mmd * multi_kernel_mmd(detector.features(adv), real_features) + penalty
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                self._observe(health, loss, [torch.zeros_like(t) if g is None else g
                                             for t, g in zip(params.values(), grads)])
                with torch.no_grad():
                    for (name, t), g in zip(params.items(), grads):
                        g = torch.zeros_like(t) if g is None else g
                        norm = g.flatten(1).abs().sum(1)
                        g = g / torch.where(norm > 0, norm, torch.ones_like(norm)).view(-1, *[1] * (g.dim() - 1))
                        momentum[name] = self.decay * momentum[name] + g if name in momentum else g
                        params[name] = t.detach() - self.lrs[name.rstrip("0123456789")] * momentum[name].sign()
                        if name.startswith("noise"):
                            params[name] = params[name].clamp(-self.noise_eps, self.noise_eps)
            with torch.no_grad():
                adv, _ = self._degrade(x0, params, basis, grid)
        info = {"linf": (adv - x0).abs().flatten(1).amax(1), "steps": self.steps, **health.info(),
                "noise_linf": torch.stack([params[f"noise{k}"].abs().flatten(1).amax(1)
                                           for k in range(self.blocks)]).amax(0)}
        if self.blocks > 1:
            info["mix_weights"] = torch.softmax(params["mix"], dim=1)
        return AttackOutput(adv.detach(), info)

    @staticmethod
    def _observe(health: AttackHealth, loss: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """One step's health: per sample, the gradient over all its parameters; the batch loss."""
        per_sample = torch.cat([g.detach().flatten(1) for g in grads], dim=1)
        health.flag(*gradient_state(per_sample))
        health.count_step(loss.detach().expand(per_sample.shape[0]))

    def budget(self) -> dict[str, Any]:
        return {"norm": "linf", "eps": self.eps, "steps": self.steps}


@register_attack("statattack", version="1", accepts=(StatisticalConsistencyAttack,), threat_model="statistical")
def statattack(**kwargs) -> StatisticalConsistencyAttack:
    """StatAttack: exposure, adaptive blur, noise matched to real features by MMD (official settings)."""
    if kwargs.get("blocks", 1) != 1:
        raise UserError("statattack has one degradation block; use mstatattack for blocks > 1.")
    return StatisticalConsistencyAttack(blocks=1, **{k: v for k, v in kwargs.items() if k != "blocks"})


@register_attack("mstatattack", version="1", accepts=(StatisticalConsistencyAttack,), threat_model="statistical")
def mstatattack(blocks: int = 3, **kwargs) -> StatisticalConsistencyAttack:
    """MStatAttack (re-implementation): K stacked StatAttack blocks mixed by softmax weights."""
    return StatisticalConsistencyAttack(blocks=blocks, **kwargs)

"""MAT: Multi-Attentional deepfake detection (Zhao et al., CVPR 2021), laid out as the official
code (yoctta/multiple-attention, config ``a1_b5_b2``) lays it out, so that its checkpoints and the
Artifact-Eraser copy's load with strict key matching and give the same logits.

Eval forward, module by module (names = checkpoint keys):

1. ``net``: EfficientNet-B4 with efficientnet_pytorch's static padding (detectors/mat_efficientnet.py).
2. ``attentions`` (AttentionMap) on backbone layer ``b5``: 3x3 conv + BN + ReLU, 1x1 conv + BN,
   ``ELU + 1``, times the constant ``mask`` buffer (24 x 24, zero on a 2-pixel border),
   nearest-resized to the map size.
3. ``texture_enhance`` (Texture_Enhance_v2) on layer ``b2``: 3x3 conv; minus its adaptive average
   pool to the attention size, nearest-upsampled (keeps the texture); one copy per attention map,
   gated by tanh of that map (bilinear, ``align_corners=True``, detached as upstream), then a
   densely connected block of grouped convs (one group per attention) -> (B, M, C, H, W).
4. Attention pooling: each attention map pools its texture copy (sum over positions, then L2
   norm) -> textural feature matrix (B, M, C); the summed maps pool ``final`` into an
   attention-weighted average (B, 1792).
5. ``projection_local`` (MLP) on the flattened matrix and ``project_final`` on the global vector,
   each followed by hardswish; concatenated (the ensemble input) and classified by
   ``ensemble_classifier_fc`` -> 2 logits [real, fake].

Stateless: the same input always gives the same output. ``auxiliary_loss`` holds the training
state of the official checkpoints (part centres, alpha, inner margins) as buffers so that those
files load strictly; nothing reads them at inference. Training (``training_loss``) adds the
regional independence loss with stateless batch-mean centres to cross-entropy, and drops whole
attention maps as upstream does; AGDA is not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import register_detector
from bench.types import Detector
from detectors.checkpoints import build_detector, load_backbone_weights
from detectors.mat_efficientnet import B4_DEPTH, B4_IMAGE_SIZE, B4_WIDTH, StaticPadEfficientNet
from detectors.sources import source_presets

MASK_SIZE, MASK_BORDER = 24, 2
HALF = [0.5, 0.5, 0.5]

# Checkpoint sources (plain kwargs; both publish the same architecture, config a1_b5_b2).
# official: yoctta/multiple-attention trains and tests on 380 px centre crops, RGB in [-1, 1].
OFFICIAL = {"input_size": 380, "mean": HALF, "std": HALF}
# Artifact-Eraser: the same model (still built for 380 px, so the same static pads) fed 256 px
# images (Resize((256, 256)), RGB in [-1, 1]).
ARTIFACT_ERASER = {"input_size": 256, "mean": HALF, "std": HALF}
# Reduced width for the demo world; 128 px for the same reason as the tiny EfficientNet.
TINY = {"channel_multiplier": 0.25, "depth_multiplier": 0.2, "num_attentions": 2, "mid_dims": 32, "input_size": 128}


class AttentionMap(nn.Module):
    """M non-negative attention maps, zeroed near the border by a fixed mask."""

    def __init__(self, c_in: int, num_attentions: int):
        super().__init__()
        mask = torch.zeros(1, 1, MASK_SIZE, MASK_SIZE)
        mask[..., MASK_BORDER:-MASK_BORDER, MASK_BORDER:-MASK_BORDER] = 1
        self.register_buffer("mask", mask)
        self.conv_extract = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv2 = nn.Conv2d(c_in, num_attentions, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_attentions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv2(F.relu(self.bn1(self.conv_extract(x)))))
        return (F.elu(x) + 1) * F.interpolate(self.mask, size=x.shape[-2:], mode="nearest")


def upsample_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=True)


class TextureEnhance(nn.Module):
    """Texture_Enhance_v2: per-attention copies of the de-averaged shallow features refined by a
    densely connected block of grouped convs (group m only sees copy m)."""

    def __init__(self, channels: int, num_attentions: int):
        super().__init__()
        c, m = channels, num_attentions
        self.num_attentions = m
        self.conv_extract = nn.Conv2d(c, c, 3, padding=1)
        self.conv0 = nn.Conv2d(c * m, c * m, 5, padding=2, groups=m)
        self.conv1 = nn.Conv2d(c * m, c * m, 3, padding=1, groups=m)
        self.bn1 = nn.BatchNorm2d(c * m)
        self.conv2 = nn.Conv2d(2 * c * m, c * m, 3, padding=1, groups=m)
        self.bn2 = nn.BatchNorm2d(2 * c * m)
        self.conv3 = nn.Conv2d(3 * c * m, c * m, 3, padding=1, groups=m)
        self.bn3 = nn.BatchNorm2d(3 * c * m)
        self.conv_last = nn.Conv2d(4 * c * m, c * m, 1, groups=m)
        self.bn4 = nn.BatchNorm2d(4 * c * m)
        self.bn_last = nn.BatchNorm2d(c * m)

    def _cat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Concatenate channels group by group, so that each attention keeps its own block."""
        n, _, h, w = a.shape
        m = self.num_attentions
        return torch.cat([a.reshape(n, m, -1, h, w), b.reshape(n, m, -1, h, w)], dim=2).reshape(n, -1, h, w)

    def forward(self, feats: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feats.shape
        feats = self.conv_extract(feats)
        low = F.adaptive_avg_pool2d(feats, maps.shape[-2:])
        if h > low.shape[-2]:
            feats = feats - F.interpolate(low, size=(h, w), mode="nearest")
        gates = torch.tanh(upsample_maps(maps.detach(), (h, w))).unsqueeze(2)  # (B, M, 1, H, W)
        x0 = self.conv0((feats.unsqueeze(1) * gates).reshape(n, -1, h, w))
        x1 = self._cat(x0, self.conv1(F.relu(self.bn1(x0))))
        x2 = self._cat(x1, self.conv2(F.relu(self.bn2(x1))))
        x3 = self._cat(x2, self.conv3(F.relu(self.bn3(x2))))
        out = F.relu(self.bn_last(self.conv_last(F.relu(self.bn4(x3)))))
        return out.reshape(n, self.num_attentions, c, h, w)


def pool_parts(part_feats: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """(B,M,C,H,W) x (B,M,h,w) -> (B,M,C): attention-weighted sums, L2-normalised per part."""
    maps = upsample_maps(maps, part_feats.shape[-2:])
    return F.normalize(torch.einsum("bmhw,bmchw->bmc", maps, part_feats), p=2, dim=-1)


def pool_global(feats: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) x (B,1,h,w) -> (B,C): the attention-weighted average of the feature map."""
    weights = upsample_maps(maps, feats.shape[-2:]) + 1e-8
    return torch.einsum("bmhw,bchw->bmc", weights, feats)[:, 0] / weights.sum(dim=(2, 3))


class AuxiliaryLossState(nn.Module):
    """The buffers of upstream's Auxiliary_Loss_v2 (moving part centres, their update rate alpha,
    the per-class inner margins), kept so official checkpoints load strictly. Inference never
    reads them; ``training_loss`` reads the margins."""

    def __init__(self, num_attentions: int, channels: int, alpha: float, inner_margins: Sequence[float]):
        super().__init__()
        self.register_buffer("feature_centers", torch.zeros(num_attentions, channels))
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.register_buffer("inner_margin", torch.tensor([float(m) for m in inner_margins]))


def regional_independence_loss(parts: torch.Tensor, labels: torch.Tensor, inner_margins: torch.Tensor,
                               margin: float) -> torch.Tensor:
    """Pull each sample's part vectors to their (batch) centre within a class-dependent inner
    margin, and push the M centres at least ``margin`` apart (squared distances)."""
    centres = parts.detach().mean(dim=0)  # (M, C)
    inner = inner_margins.to(parts)[labels]  # (B,)
    intra = F.relu((parts - centres).pow(2).sum(-1) - inner[:, None]).mean()
    m = centres.shape[0]
    if m < 2:
        return intra
    live = parts.mean(dim=0)  # the centres again, now with gradient: the push moves them apart
    gaps = torch.cdist(live, live).pow(2)
    off_diagonal = ~torch.eye(m, dtype=torch.bool, device=parts.device)
    inter = F.relu(margin - gaps[off_diagonal]).mean()
    return intra + inter


class MATDetector(Detector):
    """Official MAT (EfficientNet backbone, M attentions). ``channel_multiplier`` /
    ``depth_multiplier``: the backbone's width and depth coefficients (B4: 1.4 / 1.8);
    ``static_pad_size``: the nominal size its pads are computed for (380 whatever
    ``input_size`` is, as upstream builds it)."""

    def __init__(self, channel_multiplier: float = B4_WIDTH, depth_multiplier: float = B4_DEPTH,
                 static_pad_size: int = B4_IMAGE_SIZE, num_attentions: int = 4, attention_layer: str = "b5", feature_layer: str = "b2",
                 mid_dims: int = 256, dropout_rate: float = 0.25, drop_final_rate: float = 0.5,
                 drop_connect_rate: float = 0.0, alpha: float = 0.05,
                 inner_margins: Sequence[float] = (0.2, -0.8), margin: float = 0.8, ril_weight: float = 0.1,
                 input_size: int = 256, mean: Sequence[float] = HALF, std: Sequence[float] = HALF,
                 backbone_weights: str | None = None):
        super().__init__(input_size=input_size, mean=mean, std=std)
        self.net = StaticPadEfficientNet(channel_multiplier, depth_multiplier, static_pad_size,
                                         drop_connect_rate=drop_connect_rate)
        if backbone_weights:  # efficientnet_pytorch ImageNet weights (its `_fc` head is not used)
            load_backbone_weights(self.net, backbone_weights, head_prefixes=("_fc.",))
        layers = self.net.stage_channels
        for layer in (attention_layer, feature_layer):
            if layer not in layers:
                raise ValueError(f"unknown backbone layer {layer!r}; choose one of {', '.join(layers)}")
        self.attention_layer, self.feature_layer = attention_layer, feature_layer
        self.margin, self.ril_weight = float(margin), float(ril_weight)
        self.dropout_rate, self.drop_final_rate = float(dropout_rate), float(drop_final_rate)
        m, c_tex = int(num_attentions), layers[feature_layer]
        self.attentions = AttentionMap(layers[attention_layer], m)
        self.texture_enhance = TextureEnhance(c_tex, m)
        self.projection_local = nn.Sequential(nn.Linear(m * c_tex, mid_dims), nn.Hardswish(),
                                              nn.Linear(mid_dims, mid_dims))
        self.project_final = nn.Linear(self.net.num_features, mid_dims)
        self.ensemble_classifier_fc = nn.Sequential(nn.Linear(2 * mid_dims, mid_dims), nn.Hardswish(),
                                                    nn.Linear(mid_dims, 2))
        self.auxiliary_loss = AuxiliaryLossState(m, c_tex, alpha, inner_margins)

    def _forward_parts(self, xn: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named intermediate of the forward: attention_maps (B,M,h,w),
        textural_feature_matrix (B,M,C), ensemble_input (B, 2*mid_dims)."""
        layers = self.net(xn)
        maps = self.attentions(layers[self.attention_layer])
        parts = pool_parts(self.texture_enhance(layers[self.feature_layer], maps), maps)
        pool_maps, kept_parts, final = maps, parts, layers["final"]
        if self.training:  # upstream's train_batch: drop whole attentions, then the global vector
            keep = F.dropout(torch.ones(parts.shape[:2] + (1,), device=xn.device, dtype=parts.dtype),
                             self.dropout_rate, training=True)
            kept_parts, pool_maps = parts * keep, maps * keep.unsqueeze(-1)
        pooled = pool_global(final, pool_maps.sum(dim=1, keepdim=True))
        pooled = F.dropout(pooled, self.drop_final_rate, training=self.training)
        local = F.hardswish(self.projection_local(kept_parts.flatten(1)))
        ensemble_input = torch.cat([local, F.hardswish(self.project_final(pooled))], dim=1)
        return {"attention_maps": maps, "textural_feature_matrix": parts, "ensemble_input": ensemble_input}

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self._forward_parts(xn)["ensemble_input"]

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self.ensemble_classifier_fc(self.embed(xn))

    def training_loss(self, x01: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy + ``ril_weight`` x regional independence loss; returns (loss, logits)."""
        out = self._forward_parts(self.preprocess(x01))
        logits = self.ensemble_classifier_fc(out["ensemble_input"])
        loss = F.cross_entropy(logits.float(), labels)
        if self.ril_weight:
            ril = regional_independence_loss(out["textural_feature_matrix"].float(), labels,
                                             self.auxiliary_loss.inner_margin, self.margin)
            loss = loss + self.ril_weight * ril
        return loss, logits

    def attention_maps(self, x01: torch.Tensor) -> torch.Tensor:
        """The M masked attention maps (B,M,h,w), for visualisation."""
        return self._forward_parts(self.preprocess(x01))["attention_maps"]

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.net._bn1]  # the head conv's BN: 1792 ch at 1/32 scale


@register_detector("mat", version="1", accepts=(MATDetector,),
                   presets={"tiny": TINY, **source_presets("mat", {"official": OFFICIAL, "artifact-eraser": ARTIFACT_ERASER})})
def mat(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
        source: str | None = None,
        **kwargs) -> MATDetector:
    """Multi-attentional detector (Zhao et al. 2021), official layout; stateless."""
    return build_detector("mat", MATDetector, checkpoint, trust_checkpoint, strict, {**kwargs, "source": source})

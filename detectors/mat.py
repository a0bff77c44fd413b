"""MAT: Multi-Attentional deepfake detection (Zhao et al., CVPR 2021), written from the paper.

On an EfficientNet-B4 backbone:

1. **Attention module**: a 3x3 conv-BN-ReLU and a 1x1 conv on a middle stage's features give M
   non-negative attention maps (paper: attention layer "b5").
2. **Texture enhancement**: shallow features (paper: "b2") minus their local average (which
   removes the low-frequency, non-textural part), refined by a densely connected conv block.
3. **Bilinear attention pooling** with *normalised* average pooling: each attention map pools
   the texture features into one L2-normalised part vector -> textural feature matrix (M, C_t).
   The summed attention map pools the final deep features into a global vector.
4. **Ensemble classifier**: the flattened part matrix and the global vector are each projected,
   concatenated, and classified by a small MLP.

Stages are numbered from 1 over timm's ``blocks`` (B4: b2 = 1/4 scale, 32 ch; b5 = 1/16, 160 ch).
The forward pass is stateless: unlike DeepfakeBench's MAT, which swaps classifier heads after
35,910 forward calls, the same input always gives the same output. Training adds the regional
independence loss (paper Sec. 3.4, inner margins per class, inter-part margin) to cross-entropy;
its part centres are the batch means (a stateless stand-in for the paper's moving-average centres).
``ril_weight`` defaults to 0.1: at 1.0 the RIL term dominates short trainings and slows learning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import register_detector
from bench.types import Detector
from detectors._backbones import backbone_weights_file, build_efficientnet, efficientnet_arch
from detectors.checkpoints import build_detector, load_backbone_weights

# 128 px for the same reason as the tiny EfficientNet (see detectors/efficientnet.py)
TINY = {"channel_multiplier": 0.25, "depth_multiplier": 0.2, "num_attentions": 2, "mid_dims": 32,
        "input_size": 128}


def conv_bn_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class AttentionMaps(nn.Module):
    """M non-negative spatial attention maps from a middle-stage feature map."""

    def __init__(self, c_in: int, num_attentions: int):
        super().__init__()
        self.extract = conv_bn_relu(c_in, c_in)
        self.to_maps = nn.Conv2d(c_in, num_attentions, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.to_maps(self.extract(x)))


class TextureEnhancer(nn.Module):
    """Residual of local average pooling (texture) -> densely connected conv block."""

    def __init__(self, c_in: int, c_out: int, layers: int = 3, pool: int = 3):
        super().__init__()
        self.pool = pool
        self.dense = nn.ModuleList(conv_bn_relu(c_in * (i + 1), c_in) for i in range(layers))
        self.transition = nn.Sequential(nn.Conv2d(c_in * (layers + 1), c_out, 1, bias=False),
                                        nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.avg_pool2d(x, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)
        feats = [x - low]
        for layer in self.dense:
            feats.append(layer(torch.cat(feats, dim=1)))
        return self.transition(torch.cat(feats, dim=1))


def attention_pool(maps: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Bilinear attention pooling with normalised average pooling: (B,M,h,w) x (B,C,H,W) ->
    (B,M,C), each part vector averaged over positions and L2-normalised."""
    if maps.shape[-2:] != feats.shape[-2:]:
        maps = F.interpolate(maps, size=feats.shape[-2:], mode="bilinear", align_corners=False)
    parts = torch.einsum("bmhw,bchw->bmc", maps, feats) / (feats.shape[-2] * feats.shape[-1])
    return F.normalize(parts, dim=-1)


def regional_independence_loss(parts: torch.Tensor, labels: torch.Tensor,
                               inner_margins: Sequence[float], margin: float) -> torch.Tensor:
    """Pull each sample's part vectors to their (batch) centre within a class-dependent inner
    margin, and push the M centres at least ``margin`` apart (squared distances)."""
    centres = parts.detach().mean(dim=0)  # (M, C)
    inner = torch.tensor(list(inner_margins), dtype=parts.dtype, device=parts.device)[labels]  # (B,)
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
    def __init__(self, variant: str = "efficientnet_b4", channel_multiplier: float | None = None,
                 depth_multiplier: float | None = None, num_attentions: int = 4, attention_stage: int = 5,
                 texture_stage: int = 2, texture_channels: int | None = None, mid_dims: int = 256,
                 drop_rate: float = 0.0, inner_margins: Sequence[float] = (0.2, -0.8), margin: float = 0.8,
                 ril_weight: float = 0.1, input_size: int = 256, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), backbone_weights: str | None = None,
                 pretrained: bool = False):
        super().__init__(input_size=input_size, mean=mean, std=std)
        self.net = build_efficientnet(variant, 0, channel_multiplier, depth_multiplier)
        weights = backbone_weights_file(backbone_weights, pretrained, efficientnet_arch(variant)[1])
        if weights:
            load_backbone_weights(self.net, weights)
        n_stages = len(self.net.blocks)
        if not (1 <= texture_stage < attention_stage <= n_stages):
            raise ValueError(f"need 1 <= texture_stage < attention_stage <= {n_stages}")
        self.texture_stage, self.attention_stage = int(texture_stage), int(attention_stage)
        self.inner_margins, self.margin, self.ril_weight = tuple(inner_margins), float(margin), float(ril_weight)
        stage_ch, final_ch = self._probe_channels()
        c_tex = int(texture_channels or stage_ch[texture_stage - 1])
        self.attention = AttentionMaps(stage_ch[attention_stage - 1], num_attentions)
        self.texture = TextureEnhancer(stage_ch[texture_stage - 1], c_tex)
        self.project_local = nn.Sequential(nn.Linear(num_attentions * c_tex, mid_dims), nn.Hardswish(),
                                           nn.Linear(mid_dims, mid_dims))
        self.project_global = nn.Linear(final_ch, mid_dims)
        self.dropout = nn.Dropout(drop_rate)
        self.ensemble = nn.Sequential(nn.Linear(2 * mid_dims, mid_dims), nn.Hardswish(), nn.Linear(mid_dims, 2))

    @torch.no_grad()
    def _probe_channels(self) -> tuple[list[int], int]:
        was_training = self.net.training
        self.net.eval()
        x = self.net.bn1(self.net.conv_stem(torch.zeros(1, 3, 64, 64)))
        channels = []
        for stage in self.net.blocks:
            x = stage(x)
            channels.append(x.shape[1])
        final = self.net.bn2(self.net.conv_head(x)).shape[1]
        self.net.train(was_training)
        return channels, final

    def _parts(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (textural part matrix (B,M,C_t), attention maps, final deep features)."""
        x = self.net.bn1(self.net.conv_stem(xn))
        shallow = middle = None
        for i, stage in enumerate(self.net.blocks, start=1):
            x = stage(x)
            if i == self.texture_stage:
                shallow = x
            if i == self.attention_stage:
                middle = x
        deep = self.net.bn2(self.net.conv_head(x))
        maps = self.attention(middle)
        return attention_pool(maps, self.texture(shallow)), maps, deep

    def _embed_parts(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts, maps, deep = self._parts(xn)
        global_vec = attention_pool(maps.sum(dim=1, keepdim=True), deep)[:, 0]
        local = self.project_local(parts.flatten(1))
        return torch.cat([local, self.project_global(global_vec)], dim=1), parts

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self._embed_parts(xn)[0]

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self.ensemble(self.dropout(self.embed(xn)))

    def training_loss(self, x01: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy + ``ril_weight`` x regional independence loss; returns (loss, logits)."""
        feats, parts = self._embed_parts(self.preprocess(x01))
        logits = self.ensemble(self.dropout(feats))
        loss = F.cross_entropy(logits.float(), labels)
        if self.ril_weight:
            ril = regional_independence_loss(parts.float(), labels, self.inner_margins, self.margin)
            loss = loss + self.ril_weight * ril
        return loss, logits

    def attention_maps(self, x01: torch.Tensor) -> torch.Tensor:
        """The M attention maps (B,M,h,w), for visualisation."""
        return self._parts(self.preprocess(x01))[1]

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.net.bn2]


@register_detector("mat", version="1", accepts=(MATDetector,), presets={"tiny": TINY})
def mat(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
        **kwargs) -> MATDetector:
    """Multi-attentional detector (Zhao et al. 2021) on EfficientNet-B4; stateless."""
    return build_detector("mat", MATDetector, checkpoint, trust_checkpoint, strict, kwargs)

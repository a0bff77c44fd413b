"""RECCE: end-to-end reconstruction-classification learning (Cao et al., CVPR 2022), with the
module names and forward of the official code (VISION-SJTU/RECCE ``model/network/Recce.py``,
``model/common.py``), so that the official, Artifact-Eraser and DeepfakeBench files load strictly
(their sources in detectors/sources.py).

On a timm legacy-Xception encoder (1/16 scale after the entry flow):

1. ``encoder`` entry flow + the first middle block give the embedding.
2. Decoder: ``decoder1`` (x2 nearest, separable conv, BN, ReLU), ``decoder2`` (an Xception
   Block, 1/8 scale), ``decoder3`` + ``decoder4`` (1/4), ``decoder5`` (1/2), ``decoder6`` (1x1
   conv to RGB, tanh); the reconstruction is resized to the input with bilinear
   ``align_corners=True``.
3. ``reasoning`` (graph reasoning) after the next middle blocks: each embedding position is a
   node joined to the 2x2 decoder2 and 4x4 decoder4 positions under it; their embeddings are
   weighted (ReLU then softmax over the patch), gated by the embedding, concatenated with it,
   sigmoided and re-projected; the result is added to the embedding.
4. One more middle block, then ``attention`` (guided attention): |input - reconstruction|
   resized to the feature grid (bilinear, ``align_corners=True``) gives a gate for
   ``h(features)``, plus the features themselves.
5. The rest of the encoder, global average pool, dropout, ``fc`` with 1 or 2 outputs as stored:
   two outputs are ``[real, fake]`` as they are, one output z is ``[0, z]``.

``width`` and ``middle_blocks`` shrink the network for the demo (``tiny``); the full model is
``width=1, middle_blocks=8``. Training (``training_loss``): cross-entropy on the logits plus
``rec_weight`` x the L1 reconstruction error of real faces (the paper's contrastive term is
left out).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models.xception import Block, SeparableConv2d
from torch import nn

from bench.registry import register_detector
from bench.types import Detector, two_way
from detectors._backbones import XceptionNet, backbone_weights_file
from detectors.checkpoints import build_detector, load_backbone_weights
from detectors.sources import source_presets

TINY = {"width": 0.125, "middle_blocks": 2, "input_size": 64}
# bilinear resizes of the reconstruction and its residual (official: True; a sensitivity test flips it)
ALIGN_CORNERS = True


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    """x2 nearest up-sampling, separable 3x3 conv, BN, ReLU (decoder1/3/5)."""
    return nn.Sequential(nn.UpsamplingNearest2d(scale_factor=2), SeparableConv2d(c_in, c_out, 3, 1, 1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def mlp(c_in: int, c_out: int, conv: bool) -> nn.Sequential:
    """Two bias-free 1x1 layers with a ReLU between (conv on maps, linear on vectors)."""
    layer = (lambda i, o: nn.Conv2d(i, o, 1, bias=False)) if conv else (lambda i, o: nn.Linear(i, o, bias=False))
    return nn.Sequential(layer(c_in, c_out), nn.ReLU(True), layer(c_out, c_out))


class GraphReasoning(nn.Module):
    """Embedding nodes (a) aggregate the decoder nodes (b: 1/8 scale, c: 1/4 scale) under them."""

    def __init__(self, va_in: int, va_out: int, vb_in: int, vc_in: int, ratios: Sequence[int] = (2, 4),
                 drop_rate: float = 0.2):
        super().__init__()
        self.ratios = tuple(ratios)
        self.va_embedding = mlp(va_in, va_out, conv=True)
        self.va_gated_b = nn.Sequential(nn.Conv2d(va_in, va_out, 1, bias=False), nn.Sigmoid())
        self.va_gated_c = nn.Sequential(nn.Conv2d(va_in, va_out, 1, bias=False), nn.Sigmoid())
        self.vb_embedding = mlp(vb_in, va_out, conv=False)
        self.vc_embedding = mlp(vc_in, va_out, conv=False)
        self.reweight_ab = nn.Sequential(nn.Linear(2 * va_out, 1, bias=False), nn.ReLU(True))
        self.reweight_ac = nn.Sequential(nn.Linear(2 * va_out, 1, bias=False), nn.ReLU(True))
        self.reproject = nn.Sequential(nn.Conv2d(3 * va_out, va_in, 1, bias=False), nn.ReLU(True),
                                       nn.Conv2d(va_in, va_in, 1, bias=False), nn.Dropout(drop_rate))

    @staticmethod
    def _patches(vert: torch.Tensor, ratio: int) -> torch.Tensor:
        """(B, C, rH, rW) -> (B, N, r*r, C): the r x r nodes under each of the N = H*W positions."""
        b, c = vert.shape[:2]
        return F.unfold(vert, ratio, stride=ratio).reshape(b, c, ratio * ratio, -1).permute(0, 3, 2, 1)

    def _aggregate(self, emb_a: torch.Tensor, vert: torch.Tensor, ratio: int, embed: nn.Module,
                   reweight: nn.Module, gate: torch.Tensor) -> torch.Tensor:
        emb = embed(self._patches(vert, ratio))  # (B, N, r*r, D)
        pairs = torch.cat([emb_a.unsqueeze(2).expand_as(emb), emb], dim=-1)
        weights = torch.softmax(reweight(pairs), dim=2)  # over the r*r nodes of each patch
        return (weights * emb).sum(dim=2).transpose(1, 2) * gate  # (B, D, N)

    def forward(self, vert_a: torch.Tensor, vert_b: torch.Tensor, vert_c: torch.Tensor) -> torch.Tensor:
        emb_a = self.va_embedding(vert_a).flatten(2)  # (B, D, N)
        gate_b = 1 - self.va_gated_b(vert_a).flatten(2)
        gate_c = 1 - self.va_gated_c(vert_a).flatten(2)
        nodes_a = emb_a.transpose(1, 2)  # (B, N, D)
        agg_b = self._aggregate(nodes_a, vert_b, self.ratios[0], self.vb_embedding, self.reweight_ab, gate_b)
        agg_c = self._aggregate(nodes_a, vert_c, self.ratios[1], self.vc_embedding, self.reweight_ac, gate_c)
        joined = torch.sigmoid(torch.cat([agg_b, agg_c, emb_a], dim=1)).reshape(vert_a.shape[0], -1, *vert_a.shape[2:])
        return self.reproject(joined)


class GuidedAttention(nn.Module):
    """The reconstruction residual gates the features: gate * h(features) + features."""

    def __init__(self, depth: int, drop_rate: float = 0.2):
        super().__init__()
        self.gated = nn.Sequential(nn.Conv2d(3, 3, 3, 1, 1, bias=False), nn.ReLU(True),
                                   nn.Conv2d(3, 1, 1, bias=False), nn.Sigmoid())
        self.h = nn.Sequential(nn.Conv2d(depth, depth, 1, 1, bias=False), nn.BatchNorm2d(depth), nn.ReLU(True))
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, xn: torch.Tensor, reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        residual = F.interpolate((xn - reconstruction).abs(), size=features.shape[-2:], mode="bilinear",
                                 align_corners=ALIGN_CORNERS)
        return self.gated(residual) * self.h(features) + self.dropout(features)


class RECCEDetector(Detector):
    def __init__(self, num_classes: int = 1, width: float = 1.0, middle_blocks: int = 8, drop_rate: float = 0.2,
                 rec_weight: float = 0.1, input_size: int = 256, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), backbone_weights: str | None = None,
                 pretrained: bool = False):
        super().__init__(input_size=input_size, mean=mean, std=std)
        if num_classes not in (1, 2):
            raise ValueError("RECCE has a 1-logit (official) or 2-logit [real, fake] head")
        if middle_blocks < 2:
            raise ValueError("RECCE needs middle_blocks >= 2 (reasoning and attention sit between them)")
        self.encoder = XceptionNet(num_classes=0, width=width, middle_blocks=middle_blocks)
        weights = backbone_weights_file(backbone_weights, pretrained, "legacy_xception.tf_in1k")
        if weights:
            load_backbone_weights(self.encoder, weights)
        # official (8 middle blocks = block4..11): reasoning after block7, attention after block8
        self.reasoning_after = 3 + max(1, middle_blocks // 2)
        self.rec_weight = float(rec_weight)

        def ch(c: int) -> int:
            return max(8, round(c * width))

        c = self.encoder.middle_channels
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.encoder.num_features, num_classes)
        self.attention = GuidedAttention(c, drop_rate)
        self.reasoning = GraphReasoning(c, ch(256), ch(256), ch(128), (2, 4), drop_rate)
        self.decoder1 = up_conv(c, ch(256))
        self.decoder2 = Block(ch(256), ch(256), 3, 1)
        self.decoder3 = up_conv(ch(256), ch(128))
        self.decoder4 = Block(ch(128), ch(128), 3, 1)
        self.decoder5 = up_conv(ch(128), ch(64))
        self.decoder6 = nn.Sequential(nn.Conv2d(ch(64), 3, 1, 1, bias=False), nn.Tanh())

    def _forward_parts(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (pooled features (B,F), reconstruction of ``xn``)."""
        enc, r = self.encoder, self.reasoning_after
        embedding = enc.blocks(enc.stem(xn), 1, 4)
        out_d2 = self.decoder2(self.decoder1(self.dropout(embedding)))
        out_d4 = self.decoder4(self.decoder3(out_d2))
        reconstruction = F.interpolate(self.decoder6(self.decoder5(out_d4)), size=xn.shape[-2:], mode="bilinear",
                                       align_corners=ALIGN_CORNERS)
        features = enc.blocks(embedding, 5, r)
        fusion = self.reasoning(features, out_d2, out_d4) + features
        features = self.attention(xn, reconstruction, enc.blocks(fusion, r + 1, r + 1))
        deep = enc.exit_flow(enc.blocks(features, r + 2, enc.num_blocks))
        return enc.pool(deep), reconstruction

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.dropout(pooled))
        return two_way(logits) if logits.shape[1] == 1 else logits

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self._forward_parts(xn)[0]

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return self._head(self.embed(xn))

    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction, back in [0,1] (for visualisation)."""
        rec = self._forward_parts(self.preprocess(x01))[1]
        return (rec * self.norm_std + self.norm_mean).clamp(0, 1)

    def training_loss(self, x01: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy on the logits + ``rec_weight`` x L1 reconstruction error of real faces."""
        xn = self.preprocess(x01)
        pooled, reconstruction = self._forward_parts(xn)
        logits = self._head(pooled)
        loss = F.cross_entropy(logits.float(), labels)
        real = labels == 0
        if self.rec_weight and real.any():
            loss = loss + self.rec_weight * (reconstruction[real].float() - xn[real].float()).abs().mean()
        return loss, logits

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.encoder.bn4]



@register_detector("recce", version="2", accepts=(RECCEDetector,), presets={"tiny": TINY, **source_presets("recce")})
def recce(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
          source: str | None = None,
          **kwargs) -> RECCEDetector:
    """RECCE reconstruction-classification detector (Cao et al. 2022) on Xception; 1 or 2 logits."""
    return build_detector("recce", RECCEDetector, checkpoint, trust_checkpoint, strict, {**kwargs, "source": source})

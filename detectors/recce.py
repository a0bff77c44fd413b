"""RECCE: end-to-end reconstruction-classification learning (Cao et al., CVPR 2022), written
from the paper, on a timm (legacy) Xception encoder.

1. The encoder's entry flow plus the first middle-flow block give an embedding (1/16 scale).
2. A decoder (up-sample + separable conv, x4) reconstructs the normalised input; trained only on
   real faces, its reconstruction error is large where a face departs from the real distribution.
3. **Graph reasoning**: every embedding position is a node linked to all positions of the
   decoder's 1/8 and 1/4 feature maps (pooled to the embedding grid); messages are aggregated with
   dot-product affinities and added back to the embedding.
4. **Guided attention**: the per-pixel reconstruction error, resized to the embedding grid, gives a
   spatial mask that gates the reasoned features, with a residual to the plain embedding.
5. The rest of the Xception (middle and exit flow) classifies: one logit, exposed as ``[0, z]``.

Training loss (``training_loss``): BCE on the logit + ``rec_weight`` x L1 reconstruction error on
real images. Checkpoint layouts: ours, plus a 2-way ``fc`` (RECCE trained with two classes, as in
DeepfakeBench): its logit difference ``w_fake - w_real`` is the single logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models.xception import SeparableConv2d
from torch import nn

from bench.registry import register_detector
from bench.types import Detector, two_way
from detectors._backbones import XceptionNet, backbone_weights_file
from detectors.checkpoints import StateDict, build_detector, load_backbone_weights

TINY = {"width": 0.125, "middle_blocks": 2, "input_size": 64}


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), SeparableConv2d(c_in, c_out, 3, 1, 1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class GraphReasoning(nn.Module):
    """Embedding nodes aggregate messages from decoder nodes (bipartite graph, dot-product edges)."""

    def __init__(self, c_embed: int, c_decoder: Sequence[int], dims: int):
        super().__init__()
        self.query = nn.Conv2d(c_embed, dims, 1, bias=False)
        self.keys = nn.ModuleList(nn.Conv2d(c, dims, 1, bias=False) for c in c_decoder)
        self.values = nn.ModuleList(nn.Conv2d(c, dims, 1, bias=False) for c in c_decoder)
        self.out = nn.Sequential(nn.Conv2d(dims, c_embed, 1, bias=False), nn.BatchNorm2d(c_embed))
        self.scale = dims ** -0.5

    def forward(self, embedding: torch.Tensor, decoded: Sequence[torch.Tensor]) -> torch.Tensor:
        size = embedding.shape[-2:]
        q = self.query(embedding).flatten(2).transpose(1, 2)  # (B, N, d)
        keys, values = [], []
        for feat, to_k, to_v in zip(decoded, self.keys, self.values):
            feat = F.adaptive_avg_pool2d(feat, size)  # decoder nodes on the embedding grid
            keys.append(to_k(feat).flatten(2))
            values.append(to_v(feat).flatten(2))
        k, v = torch.cat(keys, dim=2), torch.cat(values, dim=2)  # (B, d, K)
        edges = torch.softmax(torch.bmm(q, k) * self.scale, dim=-1)  # (B, N, K)
        messages = torch.bmm(edges, v.transpose(1, 2)).transpose(1, 2).reshape(q.shape[0], -1, *size)
        return embedding + self.out(messages)


class GuidedAttention(nn.Module):
    """Reconstruction error -> spatial mask gating the reasoned features, plus a residual."""

    def __init__(self, c_embed: int, hidden: int = 16):
        super().__init__()
        self.mask = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, 1, 1), nn.Sigmoid())
        self.refine = nn.Sequential(nn.Conv2d(c_embed, c_embed, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(c_embed), nn.ReLU(inplace=True))

    def forward(self, xn: torch.Tensor, reconstruction: torch.Tensor, embedding: torch.Tensor,
                reasoned: torch.Tensor) -> torch.Tensor:
        error = (xn - reconstruction).abs()
        error = F.interpolate(error, size=embedding.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
        return self.mask(error) * self.refine(reasoned) + embedding


class RECCEDetector(Detector):
    def __init__(self, width: float = 1.0, middle_blocks: int = 8, graph_dims: int = 256,
                 drop_rate: float = 0.2, rec_weight: float = 0.1, input_size: int = 256,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 backbone_weights: str | None = None, pretrained: bool = False):
        super().__init__(input_size=input_size, mean=mean, std=std)
        if middle_blocks < 1:
            raise ValueError("RECCE needs middle_blocks >= 1 (the embedding ends after the first)")
        self.encoder = XceptionNet(num_classes=0, width=width, middle_blocks=middle_blocks)
        weights = backbone_weights_file(backbone_weights, pretrained, "legacy_xception.tf_in1k")
        if weights:
            load_backbone_weights(self.encoder, weights)
        self.rec_weight = float(rec_weight)
        c = self.encoder.middle_channels
        ch = [max(8, round(n * width)) for n in (256, 128, 64)]
        self.decoder1 = up_block(c, ch[0])  # 1/8
        self.decoder2 = up_block(ch[0], ch[1])  # 1/4
        self.decoder3 = up_block(ch[1], ch[2])  # 1/2
        self.decoder4 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(ch[2], 3, 1), nn.Tanh())  # full size
        self.reasoning = GraphReasoning(c, (ch[0], ch[1]), max(8, round(graph_dims * width)))
        self.attention = GuidedAttention(c)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.encoder.num_features, 1)

    def _forward_parts(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (pooled features (B,F), reconstruction of ``xn``)."""
        enc = self.encoder
        embedding = enc.blocks(enc.stem(xn), 1, 4)
        d1 = self.decoder1(embedding)
        d2 = self.decoder2(d1)
        reconstruction = self.decoder4(self.decoder3(d2))
        if reconstruction.shape[-2:] != xn.shape[-2:]:  # odd sizes: stride arithmetic rounds
            reconstruction = F.interpolate(reconstruction, size=xn.shape[-2:], mode="bilinear",
                                           align_corners=False)
        fused = self.attention(xn, reconstruction, embedding, self.reasoning(embedding, (d1, d2)))
        deep = enc.exit_flow(enc.blocks(fused, 5, enc.num_blocks))
        return enc.pool(deep), reconstruction

    def embed(self, xn: torch.Tensor) -> torch.Tensor:
        return self._forward_parts(xn)[0]

    def classify(self, xn: torch.Tensor) -> torch.Tensor:
        return two_way(self.fc(self.dropout(self.embed(xn))))

    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction, back in [0,1] (for visualisation)."""
        rec = self._forward_parts(self.preprocess(x01))[1]
        return (rec * self.norm_std + self.norm_mean).clamp(0, 1)

    def training_loss(self, x01: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE (as cross-entropy on ``[0, z]``) + ``rec_weight`` x L1 reconstruction of real faces."""
        xn = self.preprocess(x01)
        feats, reconstruction = self._forward_parts(xn)
        logits = two_way(self.fc(self.dropout(feats)))
        loss = F.cross_entropy(logits.float(), labels)
        real = labels == 0
        if self.rec_weight and real.any():
            loss = loss + self.rec_weight * (reconstruction[real].float() - xn[real].float()).abs().mean()
        return loss, logits

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.encoder.bn4]

    def checkpoint_adapters(self):
        return [two_way_fc_to_logit]


def two_way_fc_to_logit(sd: StateDict) -> StateDict:
    """A 2-way head [real, fake] gives softmax p_fake = sigmoid(z1 - z0): one logit with weight
    ``w1 - w0`` and bias ``b1 - b0`` reproduces it exactly."""
    w, b = sd.get("fc.weight"), sd.get("fc.bias")
    if w is None or w.shape[0] != 2:
        return sd
    out = dict(sd)
    out["fc.weight"] = (w[1] - w[0])[None]
    if b is not None:
        out["fc.bias"] = (b[1] - b[0])[None]
    return out


@register_detector("recce", version="1", accepts=(RECCEDetector,), presets={"tiny": TINY})
def recce(checkpoint: str | None = None, trust_checkpoint: bool = False, strict: bool = True,
          **kwargs) -> RECCEDetector:
    """RECCE reconstruction-classification detector (Cao et al. 2022) on Xception; one logit."""
    return build_detector("recce", RECCEDetector, checkpoint, trust_checkpoint, strict, kwargs)

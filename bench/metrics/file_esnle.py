"""Paper-mode ESNLE, one estimate per video, as the official evaluation computes it.

The official evaluation saves a video's frames side by side in one PNG and estimates ESNLE on
the left and right half-width strips of that wide image (``esnle_strips``), over the frames the
attack succeeded on. That needs the success flags, which exist only once the adversarials are
scored, so the runner calls :func:`file_esnle_columns` when it merges the white-box records.
The per-frame columns (``q_esnle_orig`` / ``q_esnle_adv``) stay as they are; the paper-mode
quality view uses these per-video values instead (``bench.metrics.quality_table``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from bench.metrics.quality import esnle_strips
from bench.metrics.unavailable import esnle_computable

ImageLoader = Callable[[list[int]], torch.Tensor]  # sample indices -> (N,3,H,W) in [0,1]


def file_esnle_columns(records: pd.DataFrame, originals: ImageLoader, adversarials: ImageLoader) -> pd.DataFrame:
    """``sample_index``, ``q_esnle_file_orig``, ``q_esnle_file_adv`` for the white-box records
    of one (source, attack): each video's ``esnle_strips`` over its successful frames in
    sample order, written on those frames' rows (NaN on the others). A video whose strips have
    too few patches for the estimator (``esnle_computable``) gets NaN and the reason code
    ``esnle_too_few_patches`` in ``q_esnle_file_*_reason`` instead of a near-zero number."""
    columns = {"q_esnle_file_orig": np.full(len(records), np.nan), "q_esnle_file_adv": np.full(len(records), np.nan)}
    reasons = {f"{name}_reason": np.full(len(records), "", dtype=object) for name in columns}
    success = records["success"].astype(bool).to_numpy()
    positions = pd.Series(np.arange(len(records)))[success]
    for _, rows in positions.groupby(records["video_id"].to_numpy()[success]):
        order = rows.to_numpy()[np.argsort(records["sample_index"].to_numpy()[rows.to_numpy()])]
        indices = [int(i) for i in records["sample_index"].to_numpy()[order]]
        for which, load in (("orig", originals), ("adv", adversarials)):
            frames = load(indices)
            _, c, h, w = frames.shape
            if esnle_computable(h, len(indices) * w // 2, c):
                columns[f"q_esnle_file_{which}"][order] = float(esnle_strips(frames))
            else:
                reasons[f"q_esnle_file_{which}_reason"][order] = "esnle_too_few_patches"
    return pd.DataFrame({"sample_index": records["sample_index"].to_numpy(), **columns, **reasons})


def stored_images(shards: Sequence[dict[str, torch.Tensor]], key: str = "adv") -> ImageLoader:
    """A loader over the stored 8-bit images of a run's shards (``index`` + ``key`` tensors)."""
    index = torch.cat([s["index"] for s in shards]).tolist()
    where = {int(i): n for n, i in enumerate(index)}
    images = torch.cat([s[key] for s in shards])

    def load(indices: list[int]) -> torch.Tensor:
        return images[[where[i] for i in indices]].float() / 255

    return load

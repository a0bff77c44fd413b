"""Weight files the metrics read: the IR-SE50 face-ID weights and LPIPS's AlexNet trunk.

They are inputs of a run like the detector checkpoints: the missing-files check names them
before any work and the manifest records their sha256. IR-SE50 is required when the matrix asks
for it (``identity: irse50``); a missing LPIPS trunk only makes the LPIPS column n/a (the offline
demo has none), so it is reported at the start of the run instead of stopping it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LPIPS_WHERE = "torchvision's ImageNet AlexNet (https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)"


def _lpips_trunk(quality: list[str]) -> Path | None:
    if "lpips" not in quality:
        return None
    from bench.metrics.quality import alexnet_trunk_path

    return alexnet_trunk_path()


def metric_weight_files(resolved: dict[str, Any]) -> dict[str, str]:
    """Existing metric weight files of a resolved config, as manifest key -> path."""
    metrics = resolved.get("metrics", {}) or {}
    found = {}
    for key, value in (metrics.get("identity_options", {}) or {}).items():
        if isinstance(value, str) and value and os.path.isfile(os.path.expanduser(value)):
            found[f"metrics.identity_options.{key}"] = os.path.expanduser(value)
    trunk = _lpips_trunk(list(metrics.get("quality", []) or []))
    if trunk is not None and trunk.is_file():
        found["metrics.lpips_trunk"] = str(trunk)
    return found


def missing_lpips_trunk(quality: list[str]) -> tuple[str, str, str] | None:
    """(path, what, where published) when the matrix asks for LPIPS and its trunk is absent."""
    trunk = _lpips_trunk(quality)
    if trunk is None or trunk.is_file():
        return None
    return (str(trunk), "LPIPS AlexNet trunk (without it the LPIPS column is n/a)", LPIPS_WHERE)

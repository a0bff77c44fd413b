#!/usr/bin/env bash
# Install artifact-bench into the active Python environment (use a fresh virtual environment).
#
# torchattacks is installed with --no-deps on purpose: its metadata pins requests~=2.25.1, which
# would downgrade requests and urllib3 under every other package, while its code only imports
# torch, numpy and scipy, which artifact-bench already depends on.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --upgrade pip setuptools wheel
python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install --no-deps torchattacks==3.5.1
# insightface likewise: we read its sample faces (the demo world) and use its face_align; its
# dependencies would pull the GUI opencv-python over opencv-python-headless. Its ArcFace backend
# needs onnxruntime, onnx and requests: the `arcface` extra, included in `dev` below.
python -m pip install --no-deps insightface==2.1
python -m pip install -e ".[dev]"

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# the attack tests' shared fixtures (a trained tiny detector and held-out batches)
pytest_plugins = ["attack_helpers"]

ROOT = Path(__file__).resolve().parents[1]
TINY_MATRIX = ROOT / "tests" / "tiny_matrix.yaml"

# keep the 2-core CI machine responsive and results thread-count independent
os.environ.setdefault("OMP_NUM_THREADS", "1")
# hermetic caches: no LPIPS trunk or timm weights from the developer's machine leak into tests
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="bench-torch-home-")
os.environ.setdefault("ARTIFACT_BENCH_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))

# as `bench` does: glibc keeps freed activations for reuse (bench/cpu_allocator.py)
from bench.cpu_allocator import keep_freed_memory  # noqa: E402

keep_freed_memory()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run `bench ...` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One uninterrupted run of the tiny matrix, shared by the tests that only read it."""
    from bench.config import load_matrix
    from bench.runner import run_matrix

    out = tmp_path_factory.mktemp("tiny")
    store = run_matrix(load_matrix(str(TINY_MATRIX)), out_root=out, quiet=True)
    return store

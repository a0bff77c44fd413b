"""Without torchattacks (a plain `pip install`), `bench list` and `bench run` say what to run."""

import os
import subprocess
import sys

from conftest import ROOT, TINY_MATRIX

HINT = "torchattacks is not installed; run: pip install --no-deps torchattacks==3.5.1"


def bench_without_torchattacks(*args: str) -> subprocess.CompletedProcess:
    """`bench ARGS` in an interpreter where `import torchattacks` fails as if it were absent."""
    code = ("import sys; sys.modules['torchattacks'] = None\n"
            "from bench.cli import main\n"
            f"main({list(args)!r})\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_bench_list_names_the_install_command():
    listed = bench_without_torchattacks("list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("attacks.pixel"))
    assert line.endswith(HINT) and "ModuleNotFoundError" not in line
    assert "eraser" in listed.stdout  # the other attacks still load


def test_bench_run_of_a_pixel_attack_says_what_to_install(tmp_path):
    ran = bench_without_torchattacks("run", "--matrix", str(TINY_MATRIX), "--out", str(tmp_path))
    assert ran.returncode == 2
    assert "unknown attack 'fgsm'" in ran.stderr and HINT in ran.stderr

"""What to install when a built-in or plugin module cannot be imported.

A plain ``pip install`` of artifact-bench leaves torchattacks out on purpose (its metadata pins
``requests~=2.25.1``; README "Setup"), so the module of the pixel attacks fails to import. The
registry records that failure; this turns the bare ``ModuleNotFoundError`` into the command
that fixes it.
"""

from __future__ import annotations

ARCFACE_EXTRA = "pip install 'artifact-bench[arcface]'"

# top-level module name -> the command that installs it the way install.sh does
INSTALL_COMMANDS = {
    "torchattacks": "pip install --no-deps torchattacks==3.5.1",
    "insightface": "pip install --no-deps insightface==2.1",
    "onnxruntime": ARCFACE_EXTRA,
    "onnx": ARCFACE_EXTRA,
    "efficientnet_pytorch": "pip install efficientnet_pytorch==0.7.1",
}


def install_hint(exc: BaseException) -> str | None:
    """``"torchattacks is not installed; run: pip install --no-deps torchattacks==3.5.1"`` for a
    missing module we know, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    command = INSTALL_COMMANDS.get(module)
    return f"{module} is not installed; run: {command}" if command else None

"""Reading a torch checkpoint safely, with one clear line for every way it can be wrong.

``torch.load`` reports a safetensors file, an image or a text file as an unpickling failure,
which reads as "needs arbitrary code"; a look at the first bytes names what the file is instead.
A torch file loads weights-only (plus the globals a caller allow-lists); one that needs any other
code is refused, unless the command was given ``--trust-checkpoint`` (``bench.trust``).
"""

from __future__ import annotations

import pickle
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench import trust
from bench.errors import UserError

_ZIP = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE = 0x80  # the PROTO opcode that starts a legacy torch.save / pickle stream (protocol >= 2)


def sniff(path: str | Path) -> str:
    """'torch', 'safetensors' or 'unknown' from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head.startswith(_ZIP) or (head and head[0] == _PICKLE):
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < Path(path).stat().st_size:
            return "safetensors"
    return "unknown"


def refuse_non_torch_file(path: str | Path) -> None:
    """One clear line when a file expected to be a torch checkpoint (.pt/.pth) is not one."""
    kind = sniff(path)
    if kind == "safetensors":
        raise UserError(f"{path} is a safetensors file, but a torch checkpoint (.pt/.pth written by torch.save) "
                        "is expected here")
    if kind == "unknown":
        raise UserError(f"{path} is not a torch checkpoint (neither a torch.save zip nor a pickle); "
                        "check that the path names the right file")


def safe_torch_load(path: str | Path, allowed_globals: Sequence[Any] = ()) -> Any:
    """``torch.load`` weights-only (``allowed_globals`` also allowed); a full unpickle only under
    ``--trust-checkpoint``. Every failure is one ``UserError`` naming the file."""
    path = Path(path)
    refuse_non_torch_file(path)
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        needs = f" (it needs {found.group(1)})" if found else ""
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable torch checkpoint ({first_line(exc)})") from None
    if not trust.full_unpickle_allowed():
        raise UserError(f"{path} needs arbitrary code to unpickle{needs}; refusing. Re-save it as a plain state "
                        f"dict, or pass {trust.FLAG} if you trust its source")
    try:
        return trust.load_fully(path, lambda p: torch.load(p, map_location="cpu", weights_only=False))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path} could not be unpickled ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's run on for a paragraph)."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.split(". ")[0].rstrip(".")

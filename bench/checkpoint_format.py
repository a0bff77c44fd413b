"""Tell a checkpoint's format from its first bytes, so a wrong file gets a message that says so.

``torch.load`` reports a safetensors file, an image or a text file as an unpickling failure,
which reads as "needs arbitrary code"; a look at the header first names what the file is.
"""

from __future__ import annotations

import struct
from pathlib import Path

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

"""Reading files that may be corrupt or hostile: checkpoints, resume state, foreign weights, JSON
and text inputs.

Nothing here unpickles arbitrary objects. ``.safetensors`` files are checked before they are
parsed (the 8-byte header length, the JSON header, every tensor's offsets against the file size)
and, when the writer recorded one, against a sha256 digest. Foreign torch files (``.pth``/``.pt``)
go through ``torch.load(..., weights_only=True)`` only. Every failure is an
:class:`~spurmem.errors.UnreadableFileError` naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spurmem.errors import UnreadableFileError

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read_file_bytes(path: str | Path, expected: str) -> bytes:
    """The bytes of ``path``; a missing, unreadable or non-regular file is an UnreadableFileError."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableFileError(path, expected, "no such file") from None
    except OSError as exc:  # PermissionError, IsADirectoryError, I/O errors
        raise UnreadableFileError(path, expected, exc.strerror or type(exc).__name__) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_safetensors_header(data: bytes, path: str | Path, expected: str) -> dict[str, Any]:
    """The parsed header of safetensors bytes, after checking it describes data inside the file."""
    def bad(reason: str) -> UnreadableFileError:
        return UnreadableFileError(path, expected, reason)

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, too short for a safetensors header (truncated or empty?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER_BYTES, len(data) - 8):
        raise bad(f"the header claims {n} bytes but the file has {len(data)}; not a safetensors file, or truncated")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("the header is not JSON; not a safetensors file") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body = len(data) - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            size = math.prod(int(d) for d in shape) * _ITEMSIZE[dtype]
        except (TypeError, KeyError, ValueError):
            raise bad(f"tensor {name!r} has a malformed header entry") from None
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= body):
            raise bad(f"tensor {name!r} lies outside the file (offsets {begin}..{end}, {body} data bytes); truncated?")
        if end - begin != size:
            raise bad(f"tensor {name!r}: {end - begin} bytes for shape {shape} {dtype}")
    return header


def read_safetensors(
    path: str | Path, expected: str = "a safetensors weights file", sha256: str | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, checked (header, offsets and, if given, sha256) first."""
    from safetensors.torch import load as st_load

    data = read_file_bytes(path, expected)
    if sha256 is not None and sha256_hex(data) != sha256:
        raise UnreadableFileError(path, expected, "its sha256 differs from the one recorded when it was written "
                                                  "(corrupted or replaced)")
    check_safetensors_header(data, path, expected)
    try:
        return st_load(data)
    except Exception as exc:  # noqa: BLE001 - the Rust parser raises its own error type
        raise UnreadableFileError(path, expected, str(exc)) from None


def read_torch_weights(path: str | Path, expected: str = "a torch weights file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never code."""
    import torch  # here, not at import: the readers of JSON and text need no torch

    data = read_file_bytes(path, expected)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the outcome is reported below
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unsafe or corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(path, expected, f"refused by torch.load(weights_only=True): {reason}") from None


def read_json_file(path: str | Path, expected: str) -> Any:
    """A JSON file's content; unreadable, undecodable or invalid JSON is an UnreadableFileError."""
    data = read_file_bytes(path, expected)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableFileError(path, expected, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(path, expected, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise UnreadableFileError(path, expected, "nested too deeply") from None


def read_text_file(path: str | Path, expected: str) -> str:
    """A UTF-8 text file's content; binary or unreadable content is an UnreadableFileError."""
    data = read_file_bytes(path, expected)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(path, expected, f"not UTF-8 text (byte {exc.start}); a binary file?") from None

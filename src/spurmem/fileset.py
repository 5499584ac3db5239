"""Multi-file outputs written as a set: a manifest written last, checked by readers.

A command that writes several files that belong together (``memorization units`` writes five
tables, a summary and a figure) calls :func:`write_set`. It first marks the set *pending* in
``<folder>/<name>.manifest.json``, then writes each file atomically, then writes the manifest with
every file's SHA-256. A kill in between leaves a pending manifest; a file replaced later by another
command no longer matches its hash. :func:`check_set` tells a reader which case it has, so
``spurmem report`` never pairs the new ``units_ranked.csv`` of a killed rerun with the old
``units_summary.json``. A folder written before manifests existed has none and is accepted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spurmem.record import utc_now, write_bytes_atomic, write_json_atomic

MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / f"{name}{MANIFEST_SUFFIX}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_set(folder: str | Path, name: str, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (path relative to ``folder`` -> text or bytes) as the set ``name``; returns
    the manifest. Files of the folder that are not in ``files`` are left alone."""
    folder = Path(folder)
    write_json_atomic(manifest_path(folder, name), {"set": name, "complete": False, "started": utc_now()})
    digests = {}
    for rel, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        write_bytes_atomic(folder / rel, data)
        digests[rel] = _digest(data)
    return write_json_atomic(manifest_path(folder, name),
                             {"set": name, "complete": True, "written": utc_now(), "files": digests})


def check_set(folder: str | Path, name: str) -> str | None:
    """None when the set ``name`` in ``folder`` is whole (or predates manifests), else why not: a
    sentence naming the folder and what is wrong, for a reader to show."""
    path = manifest_path(folder, name)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{path} is unreadable"
    if not manifest.get("complete"):
        return (f"the {name} outputs in {folder} are incomplete (the command writing them was interrupted "
                f"at {manifest.get('started')}); rerun it")
    bad = []
    for rel, digest in (manifest.get("files") or {}).items():
        target = Path(folder) / rel
        if not target.is_file():
            bad.append(f"{rel} missing")
        elif _digest(target.read_bytes()) != digest:
            bad.append(f"{rel} changed")
    if bad:
        return (f"the {name} outputs in {folder} are a mixed set ({', '.join(bad)} since {manifest.get('written')}); "
                f"rerun the command that writes them")
    return None

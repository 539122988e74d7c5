"""The export file: an ``.npz`` (numpy's uncompressed zip of ``.npy`` arrays), format version 1.

``__extremeq__``      uint8 array, UTF-8 JSON with
                      ``format`` = "extremeq.export", ``version`` = 1 (an integer),
                      ``recipe`` (how to rebuild the network, :mod:`extremeq.inference.recipes`),
                      ``model_class`` (class name of the exported network),
                      ``layers``: {path: {"class": "PackedLinear" | "PackedConv", "config": {...}}},
                      ``arrays``: {name: [dtype, shape]} for every array in the file,
                      ``summary``: ``extremeq.summary``'s prediction (packed_bytes, float32_bytes,
                      per-layer packed bytes) or null,
                      ``checksums``: {"arrays": [digest per array, names sorted],
                      "metadata": {section: digest}} (below).
``<path>/<name>``     one array per state variable of the packed network, named by its
                      "/"-joined attribute path: packed layers ``w`` (uint32 words, or int8 codes, or float32
                      kernel), ``alpha`` (float32 scales), ``ttq_wp``/``ttq_wn``, ``bias``;
                      float layers ``kernel``/``bias``; batch norm ``scale``/``bias``/``mean``/``var``.

Checksums: a digest is the first 16 hex digits (64 bits) of a SHA-256, short so that the file stays
within a few hundred bytes of the arrays' size. An array's digest is of ``"<dtype>|<shape>|"``
followed by its C-order bytes; the metadata has one digest per section, ``recipe``,
``model_class``, ``summary`` and each layer's entry (``layers/<path>``), of its canonical JSON
(sorted keys, no spaces); ``format``, ``version`` and ``arrays`` are checked against the file
itself. :func:`verify_arrays` checks every array's checksum, :func:`verify_metadata` the
metadata's (a file edited and saved again, e.g. a layer's ``inputs`` changed from xnor to fp,
fails it). They
catch damage and naive edits, not a forger who recomputes them: a model file is still data to be
trusted as much as its source, and loading it never runs code (:mod:`extremeq.inference.recipes`).
Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Mapping

import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "ExportFormatError",
    "write_export",
    "read_export",
    "verify_arrays",
    "verify_metadata",
    "array_checksum",
    "metadata_checksum",
]

FORMAT = "extremeq.export"
FORMAT_VERSION = 1
META_KEY = "__extremeq__"


class ExportFormatError(ValueError):
    """A file is not a loadable extremeq export (wrong version, truncated, corrupt, mismatched)."""


DIGEST_HEX = 16


def array_checksum(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{list(a.shape)}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:DIGEST_HEX]


def _json_sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:DIGEST_HEX]


#: Metadata sections with a digest of their own (besides one per layer).
SECTIONS = ("recipe", "model_class", "summary")


def metadata_checksum(meta: Mapping) -> dict[str, str]:
    """{section: digest}: recipe, model_class, summary and one per layer (``layers/<path>``), so
    that a mismatch can name what was edited."""
    sums = {k: _json_sha(meta.get(k)) for k in SECTIONS}
    sums.update({f"layers/{p}": _json_sha(v) for p, v in (meta.get("layers") or {}).items()})
    return sums


def write_export(path, meta: dict, arrays: Mapping[str, np.ndarray]) -> int:
    """Write ``meta`` (checksums added) and ``arrays``; returns the bytes written."""
    if META_KEY in arrays:
        raise ValueError(f"an array may not be named {META_KEY!r}")
    meta = dict(
        meta,
        format=FORMAT,
        version=FORMAT_VERSION,
        arrays={k: [str(a.dtype), list(a.shape)] for k, a in arrays.items()},
    )
    meta = json.loads(json.dumps(meta))  # checksums of exactly what a reader will see
    meta["checksums"] = {
        "arrays": [array_checksum(arrays[k]) for k in sorted(arrays)],
        "metadata": metadata_checksum(meta),
    }
    blob = json.dumps(meta, separators=(",", ":")).encode()
    path = os.fspath(path)
    with open(path, "wb") as f:
        np.savez(f, **{META_KEY: np.frombuffer(blob, np.uint8)}, **arrays)
    return os.path.getsize(path)


def _load_npz(path) -> tuple[dict, dict]:
    size = os.path.getsize(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                raise ExportFormatError(f"{path} is an npz file but not an extremeq export (no '{META_KEY}' entry)")
            meta = json.loads(bytes(z[META_KEY]).decode())
            arrays = {k: z[k] for k in z.files if k != META_KEY}
    except ExportFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ExportFormatError(
            f"{path} ({size:,} bytes) is truncated or corrupt and cannot be read as an extremeq export "
            f"({type(e).__name__}: {e}); save the model again"
        ) from e
    if not isinstance(meta, dict):
        raise ExportFormatError(f"{path}: the '{META_KEY}' entry is not a JSON object; the file is corrupt")
    return meta, arrays


def _check_version(path, meta):
    if meta.get("format") != FORMAT:
        raise ExportFormatError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ExportFormatError(
            f"{path}: the format version is {version!r} ({type(version).__name__}), not an integer; this "
            f"extremeq writes and reads the integer {FORMAT_VERSION}. The metadata was edited or written by "
            "another tool: export the model again"
        )
    if version != FORMAT_VERSION:
        raise ExportFormatError(
            f"{path} has extremeq export format version {version}, this extremeq reads version "
            f"{FORMAT_VERSION}; export the model again with this version (or load it with the extremeq "
            "that wrote it)"
        )


def read_export(path) -> tuple[dict, dict]:
    """(metadata, arrays) of an export file: format and version checked, every array present and of
    its listed dtype and shape. The checksums are checked by :func:`verify_arrays` and
    :func:`verify_metadata` (the loader calls them after refusing unregistered recipe builders, so
    that a file naming code is refused as such whatever else is wrong with it)."""
    path = os.fspath(path)
    meta, arrays = _load_npz(path)
    _check_version(path, meta)
    listed = meta.get("arrays", {})
    if set(listed) != set(arrays):
        raise ExportFormatError(
            f"{path}: arrays listed in the metadata and present in the file differ "
            f"(missing {sorted(set(listed) - set(arrays))[:5]}, unlisted "
            f"{sorted(set(arrays) - set(listed))[:5]}); the file is incomplete"
        )
    for name, (dtype, shape) in listed.items():
        a = arrays[name]
        if str(a.dtype) != dtype or list(a.shape) != list(shape):
            raise ExportFormatError(
                f"{path}: array '{name}' is {a.dtype} {a.shape}, the metadata says "
                f"{dtype} {tuple(shape)}; the file is corrupt"
            )
    return meta, arrays


def verify_arrays(path, meta: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise unless the file has checksums and every array equals its own, naming those that differ."""
    path = os.fspath(path)
    sums = meta.get("checksums")
    if (
        not isinstance(sums, dict)
        or not isinstance(sums.get("arrays"), list)
        or len(sums["arrays"]) != len(arrays)
        or "metadata" not in sums
    ):
        raise ExportFormatError(
            f"{path} has no checksums (written by an extremeq before they were added, or "
            "edited); export the model again"
        )
    bad = [n for n, digest in zip(sorted(arrays), sums["arrays"]) if digest != array_checksum(arrays[n])]
    if bad:
        raise ExportFormatError(
            f"{path}: array(s) {bad[:5]}{' ...' if len(bad) > 5 else ''} differ from "
            "their checksums: the file was damaged or edited after saving; export again"
        )


def verify_metadata(path, meta: Mapping) -> None:
    """Raise unless the metadata equals its checksums, naming the entries that differ."""
    stored = meta["checksums"]["metadata"]
    now = metadata_checksum(meta)
    if not isinstance(stored, dict):
        stored = {}
    bad = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if bad:
        raise ExportFormatError(
            f"{os.fspath(path)}: the metadata entries {bad} differ from their checksums: the file was edited "
            "and saved again after export, so it may not describe the network its arrays were packed from; "
            "export the model again"
        )

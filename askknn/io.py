"""Atomic writes: every output appears whole or not at all; files read back name themselves in errors.

An atomic write goes to a temporary file beside its target, named `.tmp-<target name>-<8 random
characters><suffix>`, and is renamed onto the target only when complete. A process killed mid-write
leaves that temporary behind: `.dvcignore` hides the pattern from DVC (so a folder that stages depend
on keeps its hash), and the next write of the same target removes it.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from askknn.shared import ParamError

TMP_PREFIX = ".tmp-"          # .dvcignore holds the matching pattern: .tmp-*
METADATA_KEY = "askknn"       # safetensors metadata: one key holding sorted JSON (stable bytes)


class UnreadableFile(RuntimeError):
    """A file that exists but cannot be read (truncated, corrupted, or refused); the message names it."""


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries left by interrupted atomic writes of `path` (and only of `path`)."""
    pattern = re.compile(re.escape(TMP_PREFIX + path.name) + r"-[a-z0-9_]{8}" + re.escape(path.suffix))
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(path):   # left by a write that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path, **arrays: np.ndarray) -> None:
    """np.savez's format with a fixed time stamp on every member (np.savez stamps the current time):
    equal arrays give equal bytes, so a re-run that changes nothing leaves DVC's hash unchanged."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for key, value in arrays.items():
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def load_npz(path) -> dict[str, np.ndarray]:
    """The arrays of a .npz file; a truncated or corrupted one is named in the error."""
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except Exception as exc:   # BadZipFile, a truncated member, pickled objects np.load refuses
        raise UnreadableFile(f"{path} cannot be read as a NumPy archive ({failure(exc)})") from exc


def load_output(path, load: Callable, rebuild: str):
    """`load(path)` for a file a pipeline stage writes; missing or unreadable, the error names the file
    and the command that makes it again."""
    if not Path(path).exists():
        raise ParamError(f"{path} is missing; run the stage that writes it first ({rebuild})")
    try:
        return load(path)
    except UnreadableFile as exc:
        raise UnreadableFile(f"{exc}; rebuild it with: {rebuild}") from exc


def failure(exc: Exception) -> str:
    """An exception as one line: its type and the first line of its message."""
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"


def save_torch(path, obj) -> None:
    """A torch file (training checkpoints). Serialised in memory first: torch stores the file's name
    inside the archive, so saving straight to the temporary would make identical states differ."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_torch(path, map_location="cpu"):
    """Tensors and plain containers only (weights_only=True); any failure names the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:   # truncated zip, bad pickle, refused global: all "cannot be read"
        reason = ("refused by weights_only loading: it holds more than tensors and plain containers"
                  if "weights_only" in str(exc) else failure(exc))
        raise UnreadableFile(f"{path} cannot be read ({reason})") from exc


def save_weights(path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Tensors as safetensors: no pickle, and identical tensors and metadata give identical bytes.
    The metadata (any JSON-able dict) is stored as one sorted-JSON string: safetensors writes several
    metadata keys in a per-process random order."""
    from safetensors.torch import save_file

    meta = {METADATA_KEY: json.dumps(metadata, sort_keys=True)} if metadata else None
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata of a safetensors file; an unreadable file is named in the error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:   # SafetensorError: truncated, not safetensors, bad header
        raise UnreadableFile(f"{path} cannot be read as a safetensors file ({exc})") from exc
    if set(meta) == {METADATA_KEY}:
        meta = json.loads(meta[METADATA_KEY])
    return tensors, meta

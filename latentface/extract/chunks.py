"""Chunk files of an encoding run: one ``.npz`` per finished batch in a work folder beside the output.

A chunk holds the batch's arrays and the key of the run that wrote it; a later run with the same key reuses it
(resume after a crash or a kill), a run with another key ignores it.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from latentface.fileio import npz_bytes, write_atomic

CHUNK_KEY = "key"
"""Array of a chunk file holding the key of the run that wrote it."""


def chunk_path(work: Path, index: int) -> Path:
    """The chunk file of batch `index` in the work folder `work`."""
    return work / f"batch-{index:07d}.npz"


def save_chunk(work: Path, index: int, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write batch `index`'s arrays atomically as a chunk of the run with `key`.

    Args:
        work: the work folder.
        index: the batch.
        key: the run's key.
        arrays: ``status`` and the batch's feature or code arrays.

    Returns:
        The chunk file.
    """
    return write_atomic(chunk_path(work, index), npz_bytes({**arrays, CHUNK_KEY: np.array(key)}))


def load_chunk(path: Path, key: str, rows: int, widths: Mapping[str, int]) -> dict[str, np.ndarray] | None:
    """A saved chunk of the run with this key.

    Args:
        path: the chunk file.
        key: the run's key.
        rows: rows of the batch.
        widths: the arrays expected, with their widths.

    Returns:
        ``status`` and the arrays, or None when the file is absent, of another run, or damaged.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data[CHUNK_KEY]) != key:
                return None
            chunk = {name: data[name] for name in ("status", *widths)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if chunk["status"].shape != (rows,) or any(chunk[n].shape != (rows, w) for n, w in widths.items()):
        return None
    return chunk


def remove_chunks(work: Path, batches: int) -> None:
    """Delete a run's chunk files, then the folder if nothing else is in it (a user's folder may hold more).

    Args:
        work: the work folder.
        batches: the run's number of batches.
    """
    for i in range(batches):
        chunk_path(work, i).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work.rmdir()


def default_work_dir(out_path: str | Path, key: str) -> Path:
    """Chunk folder of an output: hidden, beside it, named by the output and the start of the key.

    Args:
        out_path: the output file.
        key: the run's key.

    Returns:
        The folder (not created).
    """
    out = Path(out_path)
    return out.parent / f".{out.name}.{key[:16]}.chunks"


def remove_stale_work_dirs(out: Path, keep: Path) -> None:
    """Remove chunk folders of this output left by runs with other keys (their output would be replaced anyway).

    Args:
        out: the output file.
        keep: the current run's work folder.
    """
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for entry in out.parent.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(".chunks") and entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)

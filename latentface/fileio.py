"""Atomic file writes (a reader sees the old file or the complete new one, never a partial write) and the bytes of
`.npz` files to write with them."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_TEMP_TRIES = 100


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a new, empty hidden file beside `path` with mode 0o666, which the kernel lessens by the umask.

    Args:
        path: the file the temporary one will replace.

    Returns:
        The open file descriptor (write only) and the temporary file's path.

    Raises:
        FileExistsError: every one of `_TEMP_TRIES` random names was taken.
    """
    for _ in range(_TEMP_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {str(path)!r} after {_TEMP_TRIES} tries")


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, sync it, then rename it over `path`.

    Parent folders are created. The file gets the permissions a plain ``open`` would give it (0o666 less the
    umask, applied by the kernel when the file is created: the process umask is never changed, so concurrent
    threads are safe). On any error the temporary file is removed and `path` is left untouched.

    Args:
        path: the file to write.
        data: its new content.

    Returns:
        `path`, as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def npz_bytes(arrays: Mapping[str, np.ndarray], compressed: bool = False) -> bytes:
    """Arrays as the bytes of a ``.npz`` file (to write with `write_atomic`).

    Args:
        arrays: the arrays, by name.
        compressed: deflate each array (`numpy.savez_compressed`) instead of storing it.

    Returns:
        The file's bytes.
    """
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()

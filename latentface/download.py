"""Resumable HTTP downloads of weight archives: progress bar, HTTP Range resume, atomic result, mirrors, offline.

`download_file` writes ``<dest>.part`` (with a small ``<dest>.part.json`` naming the URL and the server's validator)
and renames it to ``dest`` only once every byte has arrived (and matched a SHA-256 when one is given). An interrupted
download keeps its part file; the next call asks the server for the rest (``Range: bytes=N-``, with ``If-Range``
so that a changed file is sent whole) and starts again from zero when the server cannot resume. A download that
loses its connection is resumed automatically a few times before the error is raised.

Environment:

- ``LATENTFACE_DOWNLOAD_MIRROR=<base URL>`` replaces everything before an archive's file name (`mirrored`): a mirror
  serves ``pretrained_celeba.zip`` at ``<base URL>/pretrained_celeba.zip``.
- ``HF_HUB_OFFLINE=1`` (huggingface_hub's switch) forbids every download (`offline`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from latentface import __version__
from latentface.errors import DownloadError
from latentface.fileio import write_atomic

MIRROR_ENV = "LATENTFACE_DOWNLOAD_MIRROR"
"""Environment variable holding a base URL that replaces the origin of every registered download."""
OFFLINE_ENV = "HF_HUB_OFFLINE"
"""huggingface_hub's offline switch, honoured by every download of this package."""
CHUNK = 1 << 20
RETRIES = 3
"""Automatic resumptions of a download whose connection breaks, before `download_file` gives up."""

_TRUE = {"1", "ON", "YES", "TRUE"}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def offline() -> bool:
    """Whether downloads are disabled (``HF_HUB_OFFLINE`` set to 1, on, yes or true, as huggingface_hub reads it)."""
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in _TRUE


def mirrored(url: str) -> str:
    """`url` with everything before its file name replaced by ``$LATENTFACE_DOWNLOAD_MIRROR``, when that is set."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return url
    return f"{base.rstrip('/')}/{url.rsplit('/', 1)[-1]}"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) so that processes sharing a cache download in turn.

    Where ``fcntl`` is unavailable (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Restart(Exception):
    """The server cannot continue the part file: start again from zero."""


def _part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _resume_state(part: Path, meta: Path, url: str) -> tuple[int, str | None]:
    """Bytes already in the part file and the server's validator for them; (0, None) for a fresh start."""
    try:
        state = json.loads(meta.read_text(encoding="utf-8"))
        size = part.stat().st_size
    except (OSError, ValueError):
        state, size = None, 0
    if not isinstance(state, dict) or state.get("url") != url or size == 0:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        return 0, None
    return size, state.get("etag") or state.get("last_modified")


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    """Size of the whole file from a 200 or 206 response; raises `_Restart` when a 206 does not continue at
    `offset`."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            raise _Restart
        return None if match[3] == "*" else int(match[3])
    length = response.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _fetch(url: str, part: Path, meta: Path, progress: bool, timeout: float, desc: str) -> None:
    """One request: continue (or start) the part file. Raises `_Restart`, or OSError / HTTPException when the
    connection fails (the bytes received so far stay in the part file)."""
    offset, validator = _resume_state(part, meta, url)
    headers = {"User-Agent": f"latentface/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the part file is not a prefix the server can continue
            raise _Restart from err
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    with response:
        if response.status not in (200, 206):
            raise DownloadError(f"cannot download {url}: unexpected HTTP status {response.status}")
        if response.status == 200:
            offset = 0  # the server sends the whole file (no Range support, or the file changed)
        total = _total_size(response, offset)
        write_atomic(meta, json.dumps({"url": url, "etag": response.headers.get("ETag"),
                                       "last_modified": response.headers.get("Last-Modified"),
                                       "size": total}).encode())
        with open(part, "ab" if offset else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
            file=sys.stderr, disable=not progress, leave=False,
        ) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            finally:
                f.flush()
                os.fsync(f.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        raise http.client.IncompleteRead(b"", total - size)


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = RETRIES,
) -> str:
    """Download `url` to `dest` atomically, resuming a part file left by an interrupted call.

    Args:
        url: http(s) URL (not rewritten here: see `mirrored`).
        dest: the file to create; it appears only when complete.
        sha256: expected hex SHA-256; on mismatch the download is deleted and `DownloadError` raised.
        progress: show a progress bar on stderr.
        timeout: seconds to wait for the server on each request.
        retries: automatic resumptions after a broken connection.

    Returns:
        The hex SHA-256 of the file.

    Raises:
        DownloadError: downloads are disabled (``HF_HUB_OFFLINE``), the server refuses, the connection keeps
            breaking (the part file is kept: call again to resume), or the SHA-256 does not match.
    """
    dest = Path(dest)
    if offline():
        raise DownloadError(f"cannot download {url}: downloads are disabled ({OFFLINE_ENV} is set)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, meta = _part_paths(dest)
    failures = 0
    while True:
        try:
            _fetch(url, part, meta, progress, timeout, dest.name)
            break
        except _Restart:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        except (OSError, http.client.HTTPException) as err:
            failures += 1
            if failures > retries:
                got = part.stat().st_size if part.exists() else 0
                if isinstance(err, http.client.IncompleteRead):
                    reason = f"the connection closed with {err.expected} bytes to go"
                else:
                    reason = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
                raise DownloadError(
                    f"download of {url} failed after {got} bytes ({reason}, {failures} attempts); the part file "
                    f"{str(part)!r} is kept and the next attempt resumes it"
                ) from err
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 {digest} differs from the expected {sha256.lower()}; the download "
                            "was deleted")
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
    return digest

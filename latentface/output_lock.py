"""One writer per output: an exclusive lock beside an output file while a run writes it.

`OutputLock` takes an exclusive, non-blocking ``flock`` on ``.<name>.lock`` beside the output. A second run on the
same output is refused with `OutputLockedError` (naming the process that holds the lock) instead of writing chunks
and the output at the same time as the first. The kernel releases the lock when its process ends, however it ends,
so a killed run never leaves a stale lock; the lock file is removed on release. A process forked while the lock is
held (a DataLoader worker that decodes images) closes its copy of the lock file at once, so the lock never outlives
the process that took it.

Unix only: where ``fcntl`` does not exist (Windows), the lock does nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

from latentface.errors import LatentFaceError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLock", "OutputLockedError", "lock_path"]


class OutputLockedError(LatentFaceError):
    """Another run is writing the same output."""


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output: ``.<name>.lock`` in the same folder."""
    out = Path(output)
    return out.parent / f".{out.name}.lock"


_HELD: set[int] = set()
"""File descriptors of the locks this process holds (see `_drop_inherited_locks`)."""


def _drop_inherited_locks() -> None:
    """In a freshly forked child: close its copies of the held lock files.

    A ``flock`` belongs to the open file, which a forked child shares; a child that outlived its parent (a
    DataLoader worker of a killed run) would otherwise keep the output locked. The child's `OutputLock` objects
    then do nothing on `OutputLock.release`: the lock is their parent's.
    """
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class OutputLock:
    """An exclusive lock on an output file, as a context manager or with `acquire` / `release`.

    Args:
        output: the output file (its folder is created).
    """

    def __init__(self, output: str | os.PathLike) -> None:
        self.output = Path(output)
        self.path = lock_path(output)
        self._fd: int | None = None
        self._owner: int | None = None  # the process that took the lock

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            OutputLockedError: another process holds it.
        """
        if fcntl is None or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutputLockedError(
                    f"{str(self.output)!r} is being written by another run (process {holder}, lock "
                    f"{str(self.path)!r}); wait for it to finish, or write to another output"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:  # not a file that its last holder removed while this process opened it
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd, self._owner = fd, os.getpid()
        _HELD.add(fd)

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when not held, or held by a parent process)."""
        if self._fd is None or self._owner != os.getpid():
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

"""The error policy shared by the training-data readers: skip unreadable files deterministically, or raise.

A reader's item ``n`` reads one or more files. With ``on_error="skip"`` (the default) a missing, unreadable or
corrupt file makes the reader log a warning naming the file and return item ``n + 1`` instead (wrapping around,
then ``n + 2`` and so on): which item replaces a broken one depends only on the files, never on the order items
were read in or on the worker process, so runs stay reproducible. With ``on_error="raise"`` the first such file
raises `InvalidImageError` naming it.

Skips are reported twice:

- ``dataset.skipped``: ``(path, reason)`` of each distinct file skipped *in this process*. `DataLoader` worker
  processes read copies of the dataset, so with ``num_workers > 0`` the main process's list stays empty;
- every item's ``"skipped"`` entry: ``"path<TAB>reason"`` when the item's own file is unreadable (its data then
  come from the next readable item, whose index is the item's ``"index"``), else ``""``. An epoch that reads
  every index once thus reports each unreadable item exactly once. The entry travels with the batch from any
  worker (collated to a list of strings), so the trainer can count and log skips whatever the number of workers.
"""

from __future__ import annotations

import logging
import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from torch.utils.data import Dataset

from latentface.errors import InvalidImageError

ON_ERROR = ("skip", "raise")
"""Accepted values of ``on_error``."""

READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, zlib.error, struct.error, Image.DecompressionBombError)
"""Exceptions that mark a file as unreadable (PIL raises several kinds for corrupt data)."""

_log = logging.getLogger("latentface.data")
T = TypeVar("T")


class FileReadError(Exception):
    """A file of an item cannot be read (carries the file's path and the reason)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_file(path: Path, reader: Callable[[Path], T]) -> T:
    """Call ``reader(path)``, turning any `READ_ERRORS` into a `FileReadError` that names the file.

    Returns:
        What the reader returns.
    """
    try:
        return reader(path)
    except READ_ERRORS as err:
        cause = err.__cause__ if isinstance(err, InvalidImageError) and err.__cause__ is not None else err
        raise FileReadError(str(path), f"{type(cause).__name__}: {cause}") from err


class SkippingDataset(Dataset, ABC):
    """Base of the readers: `__getitem__` applies the error policy around the subclass's `load_item`.

    Args:
        on_error: ``"skip"`` or ``"raise"`` (module docstring).
    """

    def __init__(self, on_error: str = "skip") -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []
        self._skipped_paths: set[str] = set()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load_item(self, index: int) -> dict[str, Any]:
        """Read item ``index`` (in range); raise `FileReadError` for an unreadable file."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        own = ""
        for offset in range(n):
            try:
                item = self.load_item((index + offset) % n)
            except FileReadError as err:
                if self.on_error == "raise":
                    raise InvalidImageError(f"cannot read {err.path!r}: {err.reason}") from err
                self._record(err)
                own = own or f"{err.path}\t{err.reason}"
                continue
            item["skipped"] = own
            return item
        raise InvalidImageError(f"every one of the {n} items has an unreadable file, such as {own!r}")

    def _record(self, err: FileReadError) -> None:
        if err.path not in self._skipped_paths:
            self._skipped_paths.add(err.path)
            _log.warning("skipping unreadable file %s (%s)", err.path, err.reason)
            self.skipped.append((err.path, err.reason))

"""Reading the list files of benchmark datasets: numbered lines, errors that name the file and line, and one error
that lists every missing image.

Shared by the expression readers (`latentface.data.expressions`) and the verification-pair readers
(`latentface.data.pairs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

MISSING_LIMIT = 20
"""At most this many missing files are named in one error (the rest are counted)."""


def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """The non-blank lines of a text file with their 1-based line numbers, stripped of surrounding whitespace.

    A UTF-8 byte-order mark and Windows line ends are accepted.

    Args:
        path: the file.
        what: what the file should be, quoted when it is missing (for example ``"the RAF-DB label file"``).

    Returns:
        ``(number, text)`` for each line that is not blank.

    Raises:
        FileNotFoundError: the file does not exist or is not a file.
    """
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {os.fspath(path)!r} {state}")
    with open(path, encoding="utf-8-sig", newline=None) as f:
        return [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]


def line_error(path: Path, number: int, line: str, problem: str, expected: str) -> ValueError:
    """A `ValueError` for a malformed line: ``file:line: problem in 'line'; expected ...``.

    Args:
        path: the file.
        number: 1-based line number.
        line: the line's text.
        problem: what is wrong.
        expected: the format the line should have.
    """
    shown = line if len(line) <= 120 else line[:117] + "..."
    return ValueError(f"{os.fspath(path)}:{number}: {problem} in {shown!r}; expected {expected}")


def check_files(paths: Iterable[Path], layout: str, limit: int = MISSING_LIMIT) -> None:
    """Check that every listed file exists; report all missing ones (up to `limit`, then a count) at once.

    Args:
        paths: files a list refers to (duplicates are reported once).
        layout: the expected dataset layout, quoted in the error.
        limit: how many missing files to name.

    Raises:
        FileNotFoundError: one or more files are missing.
    """
    missing = list(dict.fromkeys(p for p in paths if not p.is_file()))
    if not missing:
        return
    named = "\n  ".join(os.fspath(p) for p in missing[:limit])
    more = f"\n  ... and {len(missing) - limit} more" if len(missing) > limit else ""
    raise FileNotFoundError(f"{len(missing)} listed image file(s) missing (expected layout: {layout}):\n"
                            f"  {named}{more}")

"""Expanding command-line inputs into image files: files, folders, glob patterns and ``@list.txt`` files.

- A file is taken as it is, whatever its suffix (reading it is what tells whether it is an image).
- A folder gives its image files (`latentface.data.files.IMAGE_SUFFIXES`), subfolders included, in natural
  order; hidden files and folders are skipped.
- A pattern with ``*``, ``?`` or ``[`` is expanded with `glob` (``**`` matches any depth), in natural order;
  matched folders are expanded as folders.
- ``@FILE`` reads one input per line from FILE (blank lines and lines starting with ``#`` are skipped); relative
  entries are relative to FILE's folder, and an entry may itself be a folder, pattern or ``@list``.

Each file appears once, at its first occurrence. Inputs that match nothing are reported, not raised, so that a
batch tool can go on with the rest.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from latentface.data.files import list_images, path_key

__all__ = ["ExpandedInputs", "expand_inputs"]

_GLOB_CHARS = ("*", "?", "[")


@dataclass
class ExpandedInputs:
    """What `expand_inputs` found.

    Attributes:
        files: the files, in order, each once.
        problems: ``(input, reason)`` for every input that gave no file (missing, empty folder, no match,
            unreadable list).
    """

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _is_pattern(text: str) -> bool:
    return any(c in text for c in _GLOB_CHARS)


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def _expand(spec: str, base: Path, exclude: Sequence[Path], out: ExpandedInputs, lists: tuple[Path, ...]) -> None:
    """Add the files of one input to `out`; `lists` are the list files being read (to stop cycles)."""
    if spec.startswith("@"):
        list_path = base / os.path.expanduser(spec[1:])
        if list_path.resolve() in lists:
            out.problems.append((spec, f"list file {list_path} includes itself"))
            return
        try:
            lines = list_path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            out.problems.append((spec, f"cannot read list file: {err}"))
            return
        for number, line in enumerate(lines, 1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                before = len(out.problems)
                _expand(entry, list_path.parent, exclude, out, (*lists, list_path.resolve()))
                out.problems[before:] = [(f"{list_path}:{number}: {s}", r) for s, r in out.problems[before:]]
        return
    path = base / os.path.expanduser(spec)
    if path.is_file():
        out.files.append(path)
    elif path.is_dir():
        found = [p for p in list_images(path) if not _inside(p, exclude)]
        if not found:
            out.problems.append((spec, "folder has no image files"))
        out.files.extend(found)
    elif _is_pattern(spec):
        matches = sorted((Path(m) for m in glob.glob(str(path), recursive=True)), key=path_key)
        found = []
        for match in matches:
            if match.is_dir():
                found.extend(list_images(match))
            elif match.is_file():
                found.append(match)
        found = [p for p in found if not _inside(p, exclude)]
        if not found:
            out.problems.append((spec, "pattern matches no files"))
        out.files.extend(found)
    else:
        out.problems.append((spec, "no such file or folder"))


def expand_inputs(specs: Iterable[str | os.PathLike], *, exclude: Iterable[str | os.PathLike] = ()) -> ExpandedInputs:
    """Expand files, folders, glob patterns and ``@list`` files (see the module docstring) into files.

    Args:
        specs: the inputs, as given on a command line (relative ones are relative to the working folder).
        exclude: folders whose files are never collected from folders and patterns (e.g. the output folder,
            so that a re-run does not read its own outputs); files named explicitly are kept.

    Returns:
        `ExpandedInputs`: the files, each once in order of first occurrence, and the inputs that gave none.
    """
    out = ExpandedInputs()
    folders = [Path(f).resolve() for f in exclude]
    for spec in specs:
        _expand(os.fspath(spec), Path(), folders, out, ())
    seen: set[Path] = set()
    unique = []
    for path in out.files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    out.files = unique
    return out

"""Expanding command-line inputs into image files: files, folders, glob patterns and ``@list.txt`` files.

- A file is taken as it is, whatever its suffix (reading it is what tells whether it is an image).
- A folder gives its image files (every format Pillow decodes: `latentface.paths.image_suffixes`), subfolders
  included, in natural order; hidden files and folders are skipped, symbolic links to folders are followed
  (loops are reported).
- A pattern with ``*``, ``?`` or ``[`` is matched by `latentface.paths.glob_paths` (``**`` matches any depth), in
  natural order; matched folders are expanded as folders.
- ``@FILE`` reads one input per line from FILE (blank lines and lines starting with ``#`` are skipped); relative
  entries are relative to FILE's folder, and an entry may itself be a folder, pattern or ``@list``.

Each file appears once, at its first occurrence. Nothing but a regular file is ever opened (a named pipe would
block its reader). Every input or found path that gives no file is reported with the reason (missing, broken
symbolic link, link loop, named pipe or other non-regular file, permission denied, folder that cannot be listed,
no match), not raised, so that a batch tool can go on with the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from latentface.paths import MISSING, display_name, glob_paths, has_magic, list_images, probe

__all__ = ["ExpandedInputs", "expand_inputs"]


@dataclass
class ExpandedInputs:
    """What `expand_inputs` found.

    Attributes:
        files: the files, in order, each once.
        problems: ``(input, reason)`` for every input or found path that gave no file (missing, broken link, link
            loop, not a regular file, permission denied, empty folder, no match, unreadable list); the input is
            printable text (`latentface.paths.display_name`).
    """

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def report(self, path: str, reason: str) -> None:
        """Record a problem."""
        self.problems.append((path, reason))


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def _expand(spec: str, base: Path, exclude: Sequence[Path], out: ExpandedInputs, lists: tuple[Path, ...]) -> None:
    """Add the files of one input to `out`; `lists` are the list files being read (to stop cycles)."""
    shown = display_name(spec)
    if spec.startswith("@"):
        list_path = base / os.path.expanduser(spec[1:])
        kind, reason, _ = probe(list_path)
        if kind != "file":
            out.report(shown, f"cannot read list file: {reason or 'it is a folder'}")
            return
        if list_path.resolve() in lists:
            out.report(shown, f"list file {display_name(list_path)} includes itself")
            return
        try:
            lines = list_path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            out.report(shown, f"cannot read list file: {err}")
            return
        for number, line in enumerate(lines, 1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                before = len(out.problems)
                _expand(entry, list_path.parent, exclude, out, (*lists, list_path.resolve()))
                where = display_name(list_path)
                out.problems[before:] = [(f"{where}:{number}: {s}", r) for s, r in out.problems[before:]]
        return
    path = base / os.path.expanduser(spec)
    kind, reason, _ = probe(path)
    if kind == "file":
        out.files.append(path)
    elif kind == "folder":
        found = [p for p in list_images(path, out.report) if not _inside(p, exclude)]
        if not found:
            out.report(shown, "folder has no image files")
        out.files.extend(found)
    elif reason == MISSING and has_magic(spec):
        found = []
        for match in glob_paths(str(path), out.report):
            kind, reason, _ = probe(match)
            if kind == "folder":
                found.extend(list_images(match, out.report))
            elif kind == "file":
                found.append(match)
            else:
                out.report(display_name(match), reason or MISSING)
        found = [p for p in found if not _inside(p, exclude)]
        if not found:
            out.report(shown, "pattern matches no files")
        out.files.extend(found)
    else:
        out.report(shown, reason or MISSING)


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

"""Finding image files on a disk that may hold anything: the file-system layer of `latentface.inputs`.

Every path is examined with ``stat`` before anything opens it, so named pipes, sockets and devices are reported,
never read (opening a pipe for reading blocks until someone writes to it). Symbolic links to folders are followed,
and a link that leads back into a folder being listed is reported as a loop instead of being followed again. Broken
links, unreadable files and folders that cannot be listed are reported with the same reason whichever way they were
found (a folder, a glob pattern or an explicit path). Glob patterns are matched here rather than with `glob`, which
follows symbolic-link loops until the operating system stops it.

File names that are not valid UTF-8 are kept as Python keeps them (undecodable bytes as lone surrogates,
`os.fsdecode`), so that the files can be opened; `display_name` turns such a name into text that can be printed
and stored (e.g. in a Parquet table).
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import inspect
import os
import stat
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageFile

from latentface.data.files import natural_key, path_key

__all__ = [
    "BROKEN_LINK",
    "LINK_LOOP",
    "MISSING",
    "Report",
    "display_name",
    "glob_paths",
    "has_magic",
    "image_suffixes",
    "is_image_name",
    "list_images",
    "probe",
]

Report = Callable[[str, str], None]
"""Called with ``(displayable path, reason)`` for every path that gives no file."""

MISSING = "no such file or folder"
BROKEN_LINK = "broken symbolic link (its target does not exist)"
LINK_LOOP = "symbolic link loop"
UNLISTABLE = "cannot list folder"

_MAGIC = ("*", "?", "[")
_IDENTIFY_ONLY = frozenset({"MPEG"})
"""Formats Pillow identifies but cannot decode (Pillow's documentation: identify-only formats; the others of that
list are stub plugins, recognised by their class)."""
_READ_THROUGH = {"MPO": "JPEG"}
"""Formats registered without an opener of their own, read by another plugin's opener."""
_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def display_name(path: str | os.PathLike) -> str:
    """A path as printable, storable text: undecodable bytes of its name become ``\\xNN`` escapes.

    Valid names are returned unchanged; the result is always valid Unicode (encodable as UTF-8).
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@functools.cache
def image_suffixes() -> tuple[str, ...]:
    """Lower-case suffixes of every image format this Pillow can decode (``.gif``, ``.tif``, ``.tiff``, ...).

    Pillow's registered extensions, less those of formats it can only identify (stub plugins, MPEG).
    """
    Image.init()
    readable = []
    for suffix, fmt in Image.registered_extensions().items():
        opener = Image.OPEN.get(_READ_THROUGH.get(fmt, fmt), (None,))[0]
        if opener is None or fmt in _IDENTIFY_ONLY:
            continue
        if inspect.isclass(opener) and issubclass(opener, ImageFile.StubImageFile):
            continue
        readable.append(suffix.lower())
    return tuple(sorted(set(readable)))


def is_image_name(name: str) -> bool:
    """Whether a file name found in a folder is listed as an image: visible, with a suffix of `image_suffixes`."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in image_suffixes()


def has_magic(text: str) -> bool:
    """Whether an input holds glob characters (``*``, ``?``, ``[``)."""
    return any(c in text for c in _MAGIC)


def _kind_name(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file or folder")


def _error_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return LINK_LOOP
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"cannot access: {err.strerror or err}"


def probe(path: Path) -> tuple[str | None, str | None, os.stat_result | None]:
    """What a path is, without reading from anything but a regular file.

    Returns:
        ``(kind, reason, stat)``: kind ``"file"`` (a regular file that can be opened for reading) or ``"folder"``,
        with its stat (links followed); or kind None and the reason (`MISSING`, `BROKEN_LINK`, `LINK_LOOP`,
        permission denied, not a regular file: named pipe, ...).
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, BROKEN_LINK if os.path.lexists(path) else MISSING, None
    except OSError as err:
        return None, _error_reason(err), None
    if stat.S_ISDIR(st.st_mode):
        return "folder", None, st
    if not stat.S_ISREG(st.st_mode):
        return None, f"not a regular file ({_kind_name(st.st_mode)})", None
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as err:
        return None, f"unreadable file: {_error_reason(err)}", None
    return "file", None, st


def _scan(folder: Path, report: Report) -> list[os.DirEntry[str]]:
    """The entries of a folder in natural order of their names; a folder that cannot be listed is reported."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: natural_key(e.name))
    except OSError as err:
        report(display_name(folder), f"{UNLISTABLE}: {_error_reason(err)}")
        return []


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _folder_identity(entry: os.DirEntry[str]) -> tuple[int, int] | None:
    """``(device, inode)`` of the folder an entry is or links to; None for anything else."""
    try:
        return _identity(os.stat(entry.path)) if entry.is_dir() else None
    except OSError:  # a link loop, or a folder that vanished: `probe` reports it when its name matters
        return None


def list_images(folder: Path, report: Report) -> list[Path]:
    """Image files (`is_image_name`) in a folder and its visible subfolders, in natural order of their paths.

    Symbolic links to folders are followed, except into a folder that is being listed (reported as `LINK_LOOP`).
    Image names that are not readable regular files (broken links, pipes, unreadable files) and subfolders that
    cannot be listed are reported; other names are ignored.
    """
    found: list[Path] = []
    st = os.stat(folder)

    def walk(directory: Path, ancestors: frozenset[tuple[int, int]]) -> None:
        for entry in _scan(directory, report):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            identity = _folder_identity(entry)
            if identity in ancestors:
                report(display_name(path), LINK_LOOP)
            elif identity is not None:
                walk(path, ancestors | {identity})
            elif is_image_name(entry.name):
                kind, reason, _ = probe(path)
                if kind == "file":
                    found.append(path)
                else:
                    report(display_name(path), reason or MISSING)

    walk(folder, frozenset({_identity(st)}))
    return found


def glob_paths(pattern: str, report: Report) -> list[Path]:
    """Paths matching a glob pattern (``*``, ``?``, ``[...]`` within a name, ``**`` for any number of folders).

    Names starting with ``.`` are matched only by a pattern part that starts with ``.``. ``**`` follows symbolic
    links to folders, except into a folder it is already inside (reported as `LINK_LOOP`). Folders that cannot be
    listed are reported. The matches (files, folders or anything else) come in natural order of their paths.
    """
    path = Path(pattern)
    parts = path.parts[1:] if path.anchor else path.parts
    start = Path(path.anchor) if path.anchor else Path()
    matches: list[Path] = []

    def visible(name: str, part: str) -> bool:
        return part.startswith(".") or not name.startswith(".")

    def subfolders(base: Path, ancestors: frozenset[tuple[int, int]]) -> list[tuple[Path, tuple[int, int]]]:
        out = []
        for entry in _scan(base, report):
            identity = _folder_identity(entry)
            if identity is None or not visible(entry.name, "*"):
                continue
            if identity in ancestors:
                report(display_name(entry.path), LINK_LOOP)
            else:
                out.append((Path(entry.path), identity))
        return out

    def match(base: Path, index: int, ancestors: frozenset[tuple[int, int]]) -> None:
        if index == len(parts):
            matches.append(base)
            return
        if not os.path.isdir(base):
            return
        part = parts[index]
        if part == "**":
            if index == len(parts) - 1:  # a final "**" matches the folder, which is then listed as a folder
                matches.append(base)
                return
            inside = ancestors | {_identity(os.stat(base))}
            match(base, index + 1, ancestors)
            for child, identity in subfolders(base, inside):
                match(child, index, inside | {identity})
        elif not has_magic(part):
            if os.path.lexists(base / part):
                match(base / part, index + 1, ancestors)
        else:
            for entry in _scan(base, report):
                if fnmatch.fnmatchcase(entry.name, part) and visible(entry.name, part):
                    match(Path(entry.path), index + 1, ancestors)

    match(start, 0, frozenset())
    return sorted(dict.fromkeys(matches), key=path_key)

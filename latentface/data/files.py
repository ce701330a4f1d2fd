"""Finding and decoding the image files of the training-data readers: suffixes, natural order, listing, decoding.

File names are ordered naturally (``frame2`` before ``frame10``, case-insensitively, ties broken by the exact
name), so every listing is deterministic. Hidden files and folders (names starting with ``.``, such as macOS's
``._x.jpg``) are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath

import torch

from latentface.options import RESAMPLES, RESIZE_MODES
from latentface.preprocess import to_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Image file suffixes the readers list (compared case-insensitively)."""

_DIGITS = re.compile(r"(\d+)")


def is_image_name(name: str, contains: str | None = None) -> bool:
    """Whether a file name is a visible image file (by suffix), optionally containing a substring.

    Args:
        name: file name (no folder).
        contains: when given, the name must contain it.

    Returns:
        True for names ending in one of `IMAGE_SUFFIXES` (any case) that do not start with ``.``.
    """
    if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
        return False
    return contains is None or contains in name


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key of a name in natural order: digit runs compare as numbers, letters case-insensitively.

    Returns:
        ``(parts, name)``: alternating text and integer parts, then the name itself to break ties.
    """
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def path_key(path: PurePath) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """Sort key of a relative path: the natural keys of its parts."""
    return tuple(natural_key(part) for part in path.parts)


def list_images(folder: Path, recursive: bool = True, contains: str | None = None) -> list[Path]:
    """Image files in a folder, in natural order of their paths relative to it.

    Args:
        folder: folder to list.
        recursive: also list subfolders (hidden ones skipped; symbolic links to folders are not followed).
        contains: keep only file names containing this substring.

    Returns:
        The image paths (``folder / relative``).
    """
    found: list[Path] = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        found.extend(Path(top, n) for n in names if is_image_name(n, contains))
    return sorted(found, key=lambda p: path_key(p.relative_to(folder)))


def subfolders(folder: Path) -> list[Path]:
    """Visible subfolders of a folder, in natural order."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def load_image(path: Path, size: int, resize_mode: str = "stretch", resample: str = "bilinear") -> torch.Tensor:
    """Decode an image file with PIL (EXIF orientation applied, grayscale to RGB, alpha dropped) and resize it.

    Args:
        path: image file.
        size: output side.
        resize_mode: ``"stretch"`` or ``"center_crop"`` (see `latentface.preprocess.resize_square`).
        resample: ``"bilinear"`` or ``"bicubic"``.

    Returns:
        float32 tensor (3, size, size) in [0, 1].

    Raises:
        InvalidImageError: the file is missing, unreadable or not an image.
    """
    return to_batch(path, size, resample, resize_mode)[0]


def check_resize(image_size: int, resize_mode: str = "stretch", resample: str = "bilinear") -> None:
    """Check resize settings up front (a bad one would otherwise make every file look unreadable).

    Raises:
        ValueError: naming the bad setting.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1, got {image_size}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if resample not in RESAMPLES:
        raise ValueError(f"resample must be one of {RESAMPLES}, got {resample!r}")


def check_folder(root: str | os.PathLike, layout: str) -> Path:
    """The root of a dataset as a `Path`, checked to be an existing folder.

    Args:
        root: dataset root.
        layout: the expected layout, quoted in the error.

    Raises:
        FileNotFoundError: the root does not exist or is not a folder.
    """
    path = Path(root)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"dataset root {str(path)!r} {what}; expected {layout}")
    return path

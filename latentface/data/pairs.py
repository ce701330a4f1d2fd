"""Face-verification pair lists in their official layouts: LFW (``pairs.txt``) and SLLFW (``pair_SLLFW.txt``), with
the images in ``lfw_crop/<Name>/<Name>_<4-digit index>.jpg``, read into `PairSet`s.

The conventions follow the released LatentFace evaluation code (``identity_test.py``): pairs in file order, ten
folds of consecutive pairs (600 each for the 6,000 pairs of both lists); an SLLFW pair is "same" when its two
images are in the same folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentface.data.files import check_folder
from latentface.data.listfiles import check_files, line_error, read_lines

FOLDS = 10
"""Folds of both verification protocols."""

_LFW_IMAGES = "lfw_crop/<Name>/<Name>_<4-digit index>.jpg"
_LFW_HEADER = "a first line '<folds> <count>' (e.g. '10 300')"
_LFW_PAIR = "'<name> <i> <j>' (same person) or '<name1> <i> <name2> <j>' (different people), i and j positive"
_SLLFW_LINE = "one '<Name>/<file>.jpg' per line, two lines per pair"


@dataclass
class PairSet:
    """A list of verification pairs.

    Attributes:
        images: every image the pairs use, once each, in order of first appearance.
        pairs: (N, 2) int64 indices into `images`.
        same: (N,) bool, whether the two images show the same person.
        fold: (N,) int64 fold of each pair, 0..9 (LFW: 0..folds-1 for the folds its header announces).
        name: ``"LFW"`` or ``"SLLFW"``.
        source: the pair file and image folder read, for logs.
    """

    images: list[Path]
    pairs: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    name: str
    source: str = ""

    def __len__(self) -> int:
        return len(self.pairs)


def _pair_set(paths: list[tuple[Path, Path]], same: list[bool], fold: np.ndarray, name: str, source: str,
              layout: str) -> PairSet:
    index: dict[Path, int] = {}
    pairs = np.array([[index.setdefault(p, len(index)) for p in pair] for pair in paths], dtype=np.int64)
    check_files(index, layout)
    return PairSet(list(index), pairs.reshape(-1, 2), np.array(same, dtype=bool), fold.astype(np.int64), name, source)


def _lfw_image(images: Path, name: str, index: str) -> Path:
    number = int(index)
    if number < 1:
        raise ValueError(f"image index {index!r} of {name!r} is not positive")
    return images / name / f"{name}_{number:04d}.jpg"


def read_lfw_pairs(root: str | os.PathLike, pairs_file: str | os.PathLike | None = None) -> PairSet:
    """Read LFW's verification pairs (``pairs.txt``) as the released code does.

    The file's first line is ``<folds> <count>``; then each fold has ``count`` same-person lines
    ``<name> <i> <j>`` followed by ``count`` different-person lines ``<name1> <i> <name2> <j>`` (fields separated
    by tabs or spaces). Image ``(name, i)`` is ``root/lfw_crop/<name>/<name>_<i as 4 digits>.jpg``. Pair ``k`` is
    in fold ``k // (2 * count)``: for the official file (``10 300``), consecutive blocks of 600.

    Args:
        root: folder with ``lfw_crop/`` (and ``pairs.txt`` unless `pairs_file` is given).
        pairs_file: the pair list; default ``root/pairs.txt``.

    Returns:
        The pairs in file order.

    Raises:
        FileNotFoundError: the root or pair file is missing, or images are missing (all named, up to a limit).
        ValueError: a bad header, a header that disagrees with the lines (number of lines, or a same/different line
            where the other kind belongs), or a malformed line (file and line named).
    """
    root = check_folder(root, f"LFW: pairs.txt and {_LFW_IMAGES}")
    path = Path(pairs_file) if pairs_file is not None else root / "pairs.txt"
    lines = read_lines(path, "LFW pair list")
    if not lines:
        raise ValueError(f"LFW pair list {os.fspath(path)!r} is empty; expected {_LFW_HEADER}, then the pairs")
    number, header = lines[0]
    fields = header.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields) or min(int(f) for f in fields) < 1:
        raise line_error(path, number, header, "bad header", f"{_LFW_HEADER} with positive numbers")
    folds, count = int(fields[0]), int(fields[1])
    body = lines[1:]
    if len(body) != folds * 2 * count:
        raise line_error(path, number, header, f"header announces {folds} folds of {count} same and {count} "
                         f"different pairs ({folds * 2 * count} lines) but {len(body)} pair lines follow",
                         f"{_LFW_HEADER} that matches the pair lines")
    images = root / "lfw_crop"
    paths: list[tuple[Path, Path]] = []
    same: list[bool] = []
    for k, (number, line) in enumerate(body):
        fields = line.split()
        if len(fields) not in (3, 4):
            raise line_error(path, number, line, f"{len(fields)} fields", _LFW_PAIR)
        is_same = len(fields) == 3
        position = k % (2 * count)
        if is_same != (position < count):
            kind, belongs = ("same", "different") if is_same else ("different", "same")
            raise line_error(path, number, line, f"a {kind}-person line as pair {position + 1} of fold "
                             f"{k // (2 * count) + 1}, where header '{header}' puts {belongs}-person lines",
                             f"{count} same then {count} different lines per fold")
        names = (fields[0], fields[0]) if is_same else (fields[0], fields[2])
        indices = (fields[1], fields[2]) if is_same else (fields[1], fields[3])
        try:
            paths.append((_lfw_image(images, names[0], indices[0]), _lfw_image(images, names[1], indices[1])))
        except ValueError:
            raise line_error(path, number, line, "an image index that is not a positive integer", _LFW_PAIR) from None
        same.append(is_same)
    fold = np.repeat(np.arange(folds), 2 * count)
    return _pair_set(paths, same, fold, "LFW", f"{path} with images in {images}/", f"{root}/{_LFW_IMAGES}")


def consecutive_folds(n: int, folds: int = FOLDS) -> np.ndarray:
    """Fold of each of n pairs split into consecutive blocks as the released ``KFold`` does: fold i holds pairs
    ``i*n//folds`` up to ``(i+1)*n//folds`` (blocks of 600 for 6,000 pairs).

    Raises:
        ValueError: fewer pairs than folds.
    """
    if n < folds:
        raise ValueError(f"{n} pairs cannot fill {folds} folds")
    starts = np.array([i * n // folds for i in range(folds)])
    return np.searchsorted(starts, np.arange(n), side="right") - 1


def read_sllfw_pairs(root: str | os.PathLike, pairs_file: str | os.PathLike | None = None) -> PairSet:
    """Read SLLFW's verification pairs (``pair_SLLFW.txt``) as the released code does.

    Each pair is two consecutive lines ``<Name>/<file>.jpg`` (relative to ``root/lfw_crop``); it is a same-person
    pair when both folders are equal. Folds are consecutive blocks of pairs in file order (`consecutive_folds`:
    600 pairs each for the official 6,000).

    Args:
        root: folder with ``lfw_crop/`` (and ``pair_SLLFW.txt`` unless `pairs_file` is given).
        pairs_file: the pair list; default ``root/pair_SLLFW.txt``.

    Returns:
        The pairs in file order.

    Raises:
        FileNotFoundError: the root or pair file is missing, or images are missing (all named, up to a limit).
        ValueError: a malformed line (file and line named), an odd number of lines, or fewer than 10 pairs.
    """
    root = check_folder(root, f"SLLFW: pair_SLLFW.txt and {_LFW_IMAGES}")
    path = Path(pairs_file) if pairs_file is not None else root / "pair_SLLFW.txt"
    lines = read_lines(path, "SLLFW pair list")
    images = root / "lfw_crop"
    files: list[tuple[str, Path]] = []
    for number, line in lines:
        parts = line.split("/")
        if len(parts) != 2 or not all(parts) or any(c.isspace() for c in line):
            raise line_error(path, number, line, "not a '<folder>/<file>' path", _SLLFW_LINE)
        files.append((parts[0], images / parts[0] / parts[1]))
    if len(files) % 2:
        number, line = lines[-1]
        raise line_error(path, number, line, f"an odd number of image lines ({len(files)}): this one has no partner",
                         _SLLFW_LINE)
    if len(files) < 2 * FOLDS:
        raise ValueError(f"SLLFW pair list {os.fspath(path)!r} has {len(files) // 2} pairs; {FOLDS} folds need at "
                         f"least {FOLDS} ({_SLLFW_LINE})")
    paths = [(files[i][1], files[i + 1][1]) for i in range(0, len(files), 2)]
    same = [files[i][0] == files[i + 1][0] for i in range(0, len(files), 2)]
    return _pair_set(paths, same, consecutive_folds(len(paths)), "SLLFW", f"{path} with images in {images}/",
                     f"{root}/lfw_crop/<Name>/<file> for each line of {path.name}")

"""Facial-expression benchmarks in their official layouts: RAF-DB (basic), AffectNet (manually annotated) and
generic labelled folders, read into `ExpressionSet`s of `ImageRecord`s (path, 0-based label, optional face box).

The conventions follow the released LatentFace evaluation code (``datasets/rafdb.py``, ``datasets/affectnet.py``,
``datasets/affectnet_pickle.py``): RAF-DB labels 1..7 become 0..6 and the split comes from the file name;
AffectNet keeps rows with expression 0..7 and valence and arousal in [-1, 1], crops the CSV face box, thins the
training set as the released ``--downsample`` option does (`affectnet_thinning`) and uses the official validation
set as the test set, optionally restricted to a head-pose list (`read_pose_list`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from latentface.data.files import check_folder, is_image_name, natural_key, subfolders
from latentface.data.listfiles import check_files, line_error, read_lines
from latentface.data.records import ImageRecord

EXPRESSION_SPLITS = ("train", "test")
"""Splits of the RAF-DB and AffectNet readers (AffectNet's "test" is its official validation set)."""

RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
"""RAF-DB basic classes; label ``k`` (1..7) in ``list_patition_label.txt`` is class ``k - 1`` here."""

RAFDB_LAYOUTS = (
    ("list_patition_label.txt", "aligned"),
    ("basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned"),
    ("EmoLabel/list_patition_label.txt", "Image/aligned"),
)
"""(label file, image folder) under the root, tried in order: the layout of the released code, the official
download (root = the ``RAF-DB`` folder holding ``basic/``), and root = that ``basic/`` folder itself."""

AFFECTNET_CLASSES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
"""AffectNet expression codes 0..7 (codes 8..10, none / uncertain / no face, are dropped)."""

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                     "expression", "valence", "arousal")
"""Columns of the AffectNet CSV files, in file order (used by position when a file has no header row)."""

AFFECTNET_CSV = {"train": "training.csv", "test": "validation.csv"}
"""CSV file of each split, in ``Manually_Annotated_file_lists/``."""

AFFECTNET_THINNING = ((0, 10), (1, 20), (2, 4), (3, 2), (6, 4))
"""(class, n) steps of the released training-set thinning, applied in this order (see `affectnet_thinning`):
neutral 1/10, happy 1/20, sad 1/4, surprise 1/2, anger 1/4."""

_AFFECTNET_CODES = 11
"""AffectNet's manual annotations use expression codes 0..10."""


@dataclass
class ExpressionSet:
    """One split of an expression dataset.

    Attributes:
        records: the images with their 0-based labels (and face boxes, for AffectNet).
        classes: class names; ``records[i].label`` indexes them.
        name: dataset name (``"RAF-DB"``, ``"AffectNet"`` or the folder name).
        split: split name.
        source: what was read (label file, image folder, options), for logs.
    """

    records: list[ImageRecord]
    classes: tuple[str, ...]
    name: str
    split: str
    source: str = ""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 labels of the records."""
        return np.array([r.label for r in self.records], dtype=np.int64)


def _check_split(split: str, allowed: Sequence[str], hint: str = "") -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}{hint}, got {split!r}")
    return split


# ---------------------------------------------------------------- RAF-DB

_RAFDB_LINE = "'<train|test>_<number>.jpg <label 1..7>', e.g. 'train_00001.jpg 5'"


def _rafdb_layout(root: Path) -> tuple[Path, Path]:
    for label_file, image_dir in RAFDB_LAYOUTS:
        if (root / label_file).is_file():
            return root / label_file, root / image_dir
    tried = "; ".join(f"{root / f} with images in {root / d}/" for f, d in RAFDB_LAYOUTS)
    raise FileNotFoundError(f"no RAF-DB label file list_patition_label.txt under {os.fspath(root)!r}; tried {tried}")


def read_rafdb(root: str | os.PathLike, split: str) -> ExpressionSet:
    """Read one split of RAF-DB basic (7 classes) as the released code does.

    Layouts (`RAFDB_LAYOUTS`, first found wins): ``root/list_patition_label.txt`` with ``root/aligned/``, or the
    official download ``root/basic/EmoLabel/list_patition_label.txt`` with ``root/basic/Image/aligned/`` (root may
    also be that ``basic/`` folder). Each label-file line is ``<name> <label>``: ``train_00001.jpg 5`` is the image
    ``aligned/train_00001_aligned.jpg`` with label 5, i.e. class 4 (`RAFDB_CLASSES`); the split is the name's
    ``train_`` / ``test_`` prefix. Records keep the label file's order; ``source`` says which layout was read.

    Args:
        root: dataset folder.
        split: ``"train"`` or ``"test"``.

    Returns:
        The split's records (no face boxes: the aligned images are already face crops).

    Raises:
        FileNotFoundError: the root or label file is missing, or listed images are missing (all named, up to a
            limit).
        ValueError: a bad split, a malformed line or a label outside 1..7 (file and line named), or no image of
            the split in the label file.
    """
    _check_split(split, EXPRESSION_SPLITS)
    root = check_folder(root, "RAF-DB: list_patition_label.txt and aligned/, or basic/EmoLabel/ and basic/Image/")
    label_file, image_dir = _rafdb_layout(root)
    records: list[ImageRecord] = []
    for number, line in read_lines(label_file, "RAF-DB label file"):
        fields = line.split()
        if len(fields) != 2:
            raise line_error(label_file, number, line, f"{len(fields)} fields", _RAFDB_LINE)
        name, label_text = fields
        prefix = name.split("_", 1)[0]
        stem, dot, _ = name.rpartition(".")
        if prefix not in EXPRESSION_SPLITS or "_" not in name or not dot or not stem:
            raise line_error(label_file, number, line, f"image name {name!r} without a train_/test_ prefix or a "
                             "file suffix", _RAFDB_LINE)
        try:
            label = int(label_text)
        except ValueError:
            raise line_error(label_file, number, line, f"label {label_text!r} is not an integer", _RAFDB_LINE) from None
        if not 1 <= label <= len(RAFDB_CLASSES):
            raise line_error(label_file, number, line, f"label {label} out of range", _RAFDB_LINE)
        if prefix == split:
            records.append(ImageRecord(image_dir / f"{stem}_aligned.jpg", label - 1))
    if not records:
        raise ValueError(f"{os.fspath(label_file)} lists no {split} images (names starting with '{split}_')")
    check_files((r.path for r in records), f"{image_dir}/<name>_aligned.jpg for each <name>.jpg in {label_file}")
    return ExpressionSet(records, RAFDB_CLASSES, "RAF-DB", split, f"{label_file} with images in {image_dir}/")


# ---------------------------------------------------------------- AffectNet


def affectnet_thinning(labels: Sequence[int]) -> list[int]:
    """Positions kept by the released AffectNet training-set thinning (``affectnet_pickle.py --downsample``).

    Exactly as released: for each ``(class, n)`` of `AFFECTNET_THINNING` in turn, a row of that class survives
    only if its position in the rows still kept (counting rows of every class, in CSV order, after the previous
    steps) is a multiple of n. Deterministic; the kept fraction of a class is close to, not exactly, 1/n.

    Args:
        labels: expression codes of the filtered training rows, in CSV order.

    Returns:
        Indices into `labels` of the kept rows, ascending.
    """
    kept = list(range(len(labels)))
    for code, every in AFFECTNET_THINNING:
        kept = [k for position, k in enumerate(kept) if labels[k] != code or position % every == 0]
    return kept


_POSE_LINE = "'<label>/<name>.jpg' or '<label>/<name>/<k>.jpg' (as datasets/pose_30_affectnet_list.txt)"


def read_pose_list(path: str | os.PathLike) -> set[str]:
    """Read an AffectNet head-pose list (the official ``datasets/pose_{30,45}_affectnet_list.txt``).

    Each line is ``<label>/<name>.jpg`` or ``<label>/<name>/<k>.jpg``; as in the released code an image is
    selected by its file name, ``<name>`` up to its first ``.`` plus ``.jpg``, whatever its folder. The released
    lists repeat a few lines (1,949 lines, 1,944 names for 30 degrees; 985 lines, 983 names for 45 degrees).

    Returns:
        The selected file names.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a malformed line (file and line named) or an empty list.
    """
    path = Path(path)
    names: set[str] = set()
    for number, line in read_lines(path, "AffectNet pose list"):
        parts = line.split("/")
        stem = parts[1].split(".")[0] if len(parts) > 1 else ""
        if not stem:
            raise line_error(path, number, line, "no '<label>/<name>' path", _POSE_LINE)
        names.add(stem + ".jpg")
    if not names:
        raise ValueError(f"AffectNet pose list {os.fspath(path)!r} is empty; expected lines {_POSE_LINE}")
    return names


@dataclass(frozen=True)
class _AffectNetRow:
    path: str
    box: tuple[int, int, int, int]
    expression: int
    valence: float
    arousal: float


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"AffectNet CSV {os.fspath(path)!r} does not exist; expected "
                                f"Manually_Annotated_file_lists/{{{','.join(AFFECTNET_CSV.values())}}}")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]


def _column_positions(path: Path, number: int, header: list[str]) -> dict[str, int]:
    names = [cell.strip() for cell in header]
    missing = [c for c in AFFECTNET_COLUMNS if c != "facial_landmarks" and c not in names]
    if missing:
        raise line_error(path, number, ",".join(header), f"header row without the column(s) {', '.join(missing)}",
                         "the header " + ",".join(AFFECTNET_COLUMNS) + " or no header")
    return {c: names.index(c) for c in AFFECTNET_COLUMNS if c in names}


def _integer(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def _parse_affectnet(path: Path) -> list[_AffectNetRow]:
    """Every data row of an AffectNet CSV, validated (header row optional)."""
    rows = _csv_rows(path)
    columns = {c: i for i, c in enumerate(AFFECTNET_COLUMNS)}
    if rows and rows[0][1][0].strip().lower() == AFFECTNET_COLUMNS[0].lower():
        columns = _column_positions(path, *rows[0])
        rows = rows[1:]
    expected = ",".join(AFFECTNET_COLUMNS) + " with an integer box, expression 0..10 and numeric valence/arousal"
    out: list[_AffectNetRow] = []
    for number, row in rows:
        line = ",".join(row)
        if len(row) <= max(columns.values()):
            raise line_error(path, number, line, f"{len(row)} columns", expected)
        cell = {c: row[i].strip() for c, i in columns.items()}
        try:
            box = tuple(_integer(cell[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
            expression = _integer(cell["expression"])
            valence, arousal = float(cell["valence"]), float(cell["arousal"])
        except ValueError as err:
            raise line_error(path, number, line, f"unreadable number ({err})", expected) from None
        if not cell["subDirectory_filePath"]:
            raise line_error(path, number, line, "empty image path", expected)
        if not 0 <= expression < _AFFECTNET_CODES:
            raise line_error(path, number, line, f"expression {expression} out of range", expected)
        if box[2] < 1 or box[3] < 1:
            raise line_error(path, number, line, f"face box {box} without a positive width and height", expected)
        out.append(_AffectNetRow(cell["subDirectory_filePath"], box, expression, valence, arousal))  # type: ignore[arg-type]
    return out


def read_affectnet(root: str | os.PathLike, split: str, *, thin: bool = True,
                   pose_list: str | os.PathLike | None = None) -> ExpressionSet:
    """Read one split of AffectNet's manually annotated set (8 classes, contempt included) as the released code does.

    Layout: ``root/Manually_Annotated_file_lists/{training,validation}.csv`` (`AFFECTNET_COLUMNS`, with or without
    the header row) and ``root/Manually_Annotated_Images/<subDirectory_filePath>``. Rows are kept, in CSV order,
    when the expression is 0..7 (`AFFECTNET_CLASSES`) and valence and arousal are in [-1, 1]; each record's box is
    the CSV's ``(face_x, face_y, face_width, face_height)``.

    Args:
        root: dataset folder.
        split: ``"train"`` (training.csv) or ``"test"`` (the official validation set, validation.csv).
        thin: thin the training set as released (`affectnet_thinning`); ignored for the test split.
        pose_list: a head-pose list (`read_pose_list`) restricting the test split to its images.

    Returns:
        The split's records with labels 0..7 and face boxes.

    Raises:
        FileNotFoundError: the root, CSV or pose list is missing, or listed images are missing (all named, up to a
            limit).
        ValueError: a bad split, a pose list for the training split, a malformed CSV row (file and line named),
            pose-list names absent from the filtered validation set, or no rows left.
    """
    _check_split(split, EXPRESSION_SPLITS, " ('test' is the official validation set)")
    if pose_list is not None and split != "test":
        raise ValueError("pose_list restricts the test split (the validation set) only; got split 'train'")
    root = check_folder(root, "AffectNet: Manually_Annotated_file_lists/{training,validation}.csv and "
                        "Manually_Annotated_Images/<subDirectory_filePath>")
    csv_path = root / "Manually_Annotated_file_lists" / AFFECTNET_CSV[split]
    rows = [r for r in _parse_affectnet(csv_path)
            if r.expression < len(AFFECTNET_CLASSES) and -1 <= r.valence <= 1 and -1 <= r.arousal <= 1]
    source = f"{csv_path} with images in {root / 'Manually_Annotated_Images'}/"
    if split == "train" and thin:
        rows = [rows[k] for k in affectnet_thinning([r.expression for r in rows])]
        source += ", thinned as released"
    if pose_list is not None:
        names = read_pose_list(pose_list)
        rows = [r for r in rows if PurePosixPath(r.path).name in names]
        absent = sorted(names - {PurePosixPath(r.path).name for r in rows})
        if absent:
            shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
            raise ValueError(f"{len(absent)} image(s) of pose list {os.fspath(pose_list)!r} are not in the filtered "
                             f"validation set ({csv_path}, expression 0..7, valence/arousal in [-1, 1]): {shown}")
        source += f", restricted to {pose_list}"
    if not rows:
        raise ValueError(f"{os.fspath(csv_path)} has no rows with expression 0..7 and valence/arousal in [-1, 1]")
    images = root / "Manually_Annotated_Images"
    records = [ImageRecord(images / r.path, r.expression, r.box) for r in rows]
    check_files((r.path for r in records), f"{images}/<subDirectory_filePath of {csv_path.name}>")
    return ExpressionSet(records, AFFECTNET_CLASSES, "AffectNet", split, source)


# ---------------------------------------------------------------- labelled folders


def _class_names(folder: Path) -> list[str]:
    return [p.name for p in subfolders(folder)]


def read_labelled_folder(root: str | os.PathLike, split: str | None = None) -> ExpressionSet:
    """Read a labelled image folder: ``root/<class>/<image>``, or ``root/<split>/<class>/<image>`` with `split`.

    Classes are the class folder names in natural order (`latentface.data.files.natural_key`); with splits they
    are the union over every split folder of root, so a label means the same class in every split even when a
    split lacks a class. Images are the visible image files directly in each class folder, in natural order.

    Args:
        root: dataset folder.
        split: split folder name, or None when root holds the class folders.

    Returns:
        The records with labels indexing ``classes``.

    Raises:
        FileNotFoundError: the root or split folder is missing, or no image is found.
    """
    layout = "root/<class>/<image>" if split is None else "root/<split>/<class>/<image>"
    root = check_folder(root, f"a labelled folder {layout}")
    if split is None:
        folder, classes = root, _class_names(root)
    else:
        folder = root / split
        if not folder.is_dir():
            found = ", ".join(p.name for p in subfolders(root)) or "none"
            raise FileNotFoundError(f"split folder {os.fspath(folder)!r} does not exist (split folders found: "
                                    f"{found}); expected {layout}")
        classes = sorted({name for s in subfolders(root) for name in _class_names(s)}, key=natural_key)
    records = [ImageRecord(folder / c / n, label)
               for label, c in enumerate(classes) if (folder / c).is_dir()
               for n in sorted((p.name for p in (folder / c).iterdir() if p.is_file() and is_image_name(p.name)),
                               key=natural_key)]
    if not records:
        found = ", ".join(classes) or "none"
        hint = "; pass split= for root/<split>/<class>/<image>" if split is None else ""
        raise FileNotFoundError(f"no images in {os.fspath(folder)!r} (class folders found: {found}); expected "
                                f"{layout}{hint}")
    return ExpressionSet(records, tuple(classes), root.name, split or "", f"{folder}/<class>/<image>")

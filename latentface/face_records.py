"""The face-detection pass of ``latentface encode``: image files -> encoding rows, one per face, with crop boxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from latentface.data.records import ImageRecord
from latentface.errors import InvalidImageError

NO_FACE = "no face detected"
"""Status of an image in which the detector found no face."""


@dataclass
class InputRows:
    """Rows for `latentface.extract.encode_records`: records, their names, and rows to skip with a reason."""

    records: list[ImageRecord] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skip: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Sequence[Path]) -> InputRows:
        """One whole-image row per file, named by its path."""
        return cls([ImageRecord(p) for p in paths], [str(p) for p in paths])

    def add(self, record: ImageRecord, name: str, reason: str | None = None) -> None:
        """Append a row (skipped with `reason` when given)."""
        if reason is not None:
            self.skip[len(self.records)] = reason
        self.records.append(record)
        self.names.append(name)


def _box(crop_box: Sequence[float]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(round(v)) for v in crop_box)
    return x, y, w, h


def detect_rows(paths: Sequence[Path], detector: Any, *, all_faces: bool = False, progress: bool = False) -> InputRows:
    """Run a face detector over images and make one row per kept face, with the detector's crop box.

    Args:
        paths: image files.
        detector: an object with ``detect(pil_image) -> list`` of crops that have ``crop_box`` ``(x, y, w, h)`` in
            source pixels (`latentface.preprocess.faces.FaceDetector`).
        all_faces: one row per face, named ``path#k`` (k = 0, 1, ... in the detector's order); otherwise the
            first face only (the detector chooses which, e.g. the largest), named by the path.
        progress: show a progress bar on stderr.

    Returns:
        The rows: an image without a face is skipped as `NO_FACE`; an image that cannot be read gets a plain
        record, so that the encoder reports why.
    """
    from latentface.preprocess.images import read_image, to_rgb8

    rows = InputRows()
    for path in tqdm(paths, desc="detect faces", unit="img", disable=not progress):
        try:
            image = to_rgb8(read_image(path))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            rows.add(ImageRecord(path), str(path))
            continue
        try:
            faces = detector.detect(image)
        except InvalidImageError:  # e.g. too small to search: the encoder reports the reason
            rows.add(ImageRecord(path), str(path))
            continue
        except (RuntimeError, ValueError) as err:
            rows.add(ImageRecord(path), str(path), f"face detection failed: {err}")
            continue
        if not faces:
            rows.add(ImageRecord(path), str(path), NO_FACE)
        elif all_faces:
            for k, face in enumerate(faces):
                rows.add(ImageRecord(path, box=_box(face.crop_box)), f"{path}#{k}")
        else:
            rows.add(ImageRecord(path, box=_box(faces[0].crop_box)), str(path))
    return rows

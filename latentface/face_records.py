"""The face-detection pass of ``latentface encode``: image files -> encoding rows, one per face, with the detector
box, crop box and confidence of each (`FaceBox`), so that every row of the table maps back to its face."""

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


@dataclass(frozen=True)
class FaceBox:
    """Where a detected face is in its image (source pixels of the upright image).

    Attributes:
        box: the detector's box ``(x0, y0, x1, y1)``.
        crop_box: the square that was cropped ``(x, y, w, h)``; it may extend past the image borders.
        confidence: the detector's face probability.
    """

    box: tuple[float, float, float, float]
    crop_box: tuple[int, int, int, int]
    confidence: float

    @classmethod
    def of(cls, face: Any) -> FaceBox:
        """From a detected face with ``box``, ``crop_box`` and ``confidence`` (`latentface.preprocess.FaceCrop`)."""
        return cls(tuple(float(v) for v in face.box), _box(face.crop_box), float(face.confidence))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"box": [...], "crop_box": [...], "confidence": ...}``."""
        return {"box": list(self.box), "crop_box": list(self.crop_box), "confidence": self.confidence}


@dataclass
class InputRows:
    """Rows for `latentface.extract.encode_records`: records, their names, rows to skip with a reason, and the face
    of each row that has one (after a detection pass)."""

    records: list[ImageRecord] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skip: dict[int, str] = field(default_factory=dict)
    faces: dict[int, FaceBox] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Sequence[Path]) -> InputRows:
        """One whole-image row per file, named by its path."""
        return cls([ImageRecord(p) for p in paths], [str(p) for p in paths])

    def add(self, record: ImageRecord, name: str, reason: str | None = None, face: FaceBox | None = None) -> None:
        """Append a row (skipped with `reason` when given; `face`: where its face was found)."""
        if reason is not None:
            self.skip[len(self.records)] = reason
        if face is not None:
            self.faces[len(self.records)] = face
        self.records.append(record)
        self.names.append(name)


def _box(crop_box: Sequence[float]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(round(v)) for v in crop_box)
    return x, y, w, h


def detect_rows(paths: Sequence[Path], detector: Any, *, all_faces: bool = False, progress: bool = False) -> InputRows:
    """Run a face detector over images and make one row per kept face, with the detector's crop box.

    Args:
        paths: image files.
        detector: an object with ``detect(pil_image) -> list`` of crops that have ``box`` ``(x0, y0, x1, y1)``,
            ``crop_box`` ``(x, y, w, h)`` in source pixels and ``confidence``
            (`latentface.preprocess.faces.FaceDetector`).
        all_faces: one row per face, named ``path#k`` (k = 0, 1, ... in the detector's order); otherwise the
            first face only (the detector chooses which, e.g. the largest), named by the path.
        progress: show a progress bar on stderr.

    Returns:
        The rows, each face with its `FaceBox`: an image without a face is skipped as `NO_FACE`; an image that
        cannot be read gets a plain record, so that the encoder reports why.
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
        else:
            for k, face in enumerate(faces if all_faces else faces[:1]):
                found = FaceBox.of(face)
                rows.add(ImageRecord(path, box=found.crop_box), f"{path}#{k}" if all_faces else str(path), face=found)
    return rows

"""Face detection with MTCNN (facenet-pytorch, an optional dependency: ``pip install "latentface[face]"``) and
cropping in the Unsup3D or CelebA convention (`latentface.preprocess.crops`).

Unsup3D's demo and LatentFace's ``webimage_recrop.py`` run ``MTCNN(select_largest=True)`` and crop its first
(largest) box; `FaceDetector` does the same with ``select="largest"``, and also drops boxes under a confidence
(``min_confidence``; the originals keep any box MTCNN returns) and under a size (``min_face_size``). The originals
fall back to the whole image when the crop is under 50 pixels; here no face gives an empty list.

Input handling: the image's EXIF orientation is applied first (boxes are in the upright image's pixels, as
`latentface.preprocess.read_image` returns them), any mode is converted to RGB 8-bit (`to_rgb8`: grayscale,
palette, RGBA, CMYK, 16-bit), images under `MIN_IMAGE_SIDE` pixels on a side are refused, and images larger than
`DETECT_MAX_SIDE` are shrunk to it before MTCNN runs (its image pyramid would otherwise take several times the
image's memory in float32), the boxes being mapped back to the full image, from which the crops are cut.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from latentface.errors import InvalidImageError
from latentface.preprocess.crops import CROPS, crop_box_for, crop_image
from latentface.preprocess.images import MIN_IMAGE_SIDE, check_image_size, to_rgb8, upright

__all__ = ["DETECT_MAX_SIDE", "SELECTS", "FaceCrop", "FaceDetector"]

SELECTS = ("largest", "all")
"""`FaceDetector` ``select`` values: the largest face only, or every face (largest first)."""

DETECT_MAX_SIDE = 1280
"""Default longest side (pixels) of the image MTCNN sees; larger images are shrunk to it for detection."""

_MAX_BATCH = 16  # images per MTCNN call: its memory grows with the batch
_MTCNN_WINDOW = 12  # MTCNN's first network looks at 12 x 12 windows: smaller faces are not searched for
_INSTALL = 'face detection needs facenet-pytorch: pip install "latentface[face]"'


@dataclass(frozen=True)
class FaceCrop:
    """One detected face.

    Attributes:
        image: square RGB crop, borders replicated, not resized.
        box: detector box ``(x0, y0, x1, y1)`` in source pixels.
        crop_box: ``(x, y, w, h)`` in source pixels; it may extend past the image borders.
        confidence: MTCNN's face probability.
    """

    image: Image.Image
    box: tuple[float, float, float, float]
    crop_box: tuple[int, int, int, int]
    confidence: float


def _load_mtcnn() -> Any:
    try:
        return importlib.import_module("facenet_pytorch").MTCNN
    except ImportError as err:
        raise ImportError(f"{_INSTALL} ({err})") from err


@dataclass(frozen=True)
class _Prepared:
    """An input made ready for MTCNN: the full RGB image and its (possibly shrunk) detection copy."""

    rgb: Image.Image
    work: Image.Image
    scale: float  # work pixels per source pixel


class FaceDetector:
    """MTCNN face detector that returns face crops.

    Args:
        device: torch device for MTCNN's networks.
        crop: crop convention, one of `latentface.preprocess.crops.CROPS`.
        select: ``"largest"`` (at most one face per image) or ``"all"``.
        min_confidence: faces with a lower MTCNN probability are dropped.
        min_face_size: smallest face searched for and kept: boxes whose mean side is under this many source
            pixels are dropped. On images shrunk for detection faces under ``12 / scale`` source pixels are not
            searched for either (MTCNN's smallest window is 12 pixels).

    Attributes:
        max_side: longest side of the image MTCNN sees (`DETECT_MAX_SIDE`); larger inputs are shrunk.

    Raises:
        ImportError: facenet-pytorch is not installed (the message says what to install).
        ValueError: a setting is out of range.
    """

    def __init__(self, *, device: str = "cpu", crop: str = "unsup3d", select: str = "largest",
                 min_confidence: float = 0.9, min_face_size: int = 20) -> None:
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if select not in SELECTS:
            raise ValueError(f"select must be one of {SELECTS}, got {select!r}")
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be a positive number of pixels, got {min_face_size!r}")
        mtcnn = _load_mtcnn()
        self.crop = crop
        self.select = select
        self.min_confidence = float(min_confidence)
        self.min_face_size = min_face_size
        self.max_side = DETECT_MAX_SIDE
        self._mtcnn = mtcnn(min_face_size=min_face_size, select_largest=True, keep_all=True, device=device)

    def detect(self, image: Image.Image) -> list[FaceCrop]:
        """The faces in one image, largest first; ``[]`` when there is none.

        Raises:
            InvalidImageError: `image` is not a PIL image or is under `MIN_IMAGE_SIDE` pixels on a side.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceCrop]]:
        """`detect` for several images; images of equal detection size and scale go through MTCNN together.

        Raises:
            InvalidImageError: an input is not a PIL image or is too small (its index is named).
        """
        prepared = [self._prepare(image, f"image {i}") for i, image in enumerate(images)]
        groups: dict[tuple[tuple[int, int], float], list[int]] = {}
        for i, item in enumerate(prepared):  # one MTCNN call needs one image size and one search size
            groups.setdefault((item.work.size, item.scale), []).append(i)
        found: list[list[FaceCrop]] = [[] for _ in prepared]
        for indices in groups.values():
            scale = prepared[indices[0]].scale
            # The search size in detection pixels; on shrunk images never under MTCNN's window (no upsampling).
            self._mtcnn.min_face_size = self.min_face_size if scale == 1 else max(
                self.min_face_size * scale, _MTCNN_WINDOW)
            for start in range(0, len(indices), _MAX_BATCH):
                chunk = indices[start : start + _MAX_BATCH]
                boxes, probs = self._mtcnn.detect([prepared[i].work for i in chunk])
                for i, image_boxes, image_probs in zip(chunk, boxes, probs, strict=True):
                    found[i] = self._faces(prepared[i], image_boxes, image_probs)
        return found

    def _prepare(self, image: Image.Image, name: str) -> _Prepared:
        if not isinstance(image, Image.Image):
            raise InvalidImageError(f"{name}: expected a PIL image, got {type(image).__name__}")
        try:
            rgb = to_rgb8(upright(image))
        except (OSError, ValueError) as err:
            raise InvalidImageError(f"{name}: cannot convert a {image.mode} image to RGB: {err}") from err
        check_image_size(*rgb.size, name, MIN_IMAGE_SIDE)
        longest = max(rgb.size)
        if longest <= self.max_side:
            return _Prepared(rgb, rgb, 1.0)
        scale = self.max_side / longest
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        return _Prepared(rgb, rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0), scale)

    def _faces(self, item: _Prepared, boxes: Any, probs: Any) -> list[FaceCrop]:
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        # Back to source pixels: the detection image is the source shrunk by these factors.
        sx, sy = item.rgb.width / item.work.width, item.rgb.height / item.work.height
        boxes = boxes * np.array([sx, sy, sx, sy])
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        keep = [i for i in range(len(boxes)) if probs[i] >= self.min_confidence and self._big_enough(boxes[i])]
        keep.sort(key=lambda i: -(boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]))
        if self.select == "largest":
            keep = keep[:1]
        faces = []
        for i in keep:
            box = tuple(float(v) for v in boxes[i])
            crop_box = crop_box_for(box, self.crop)
            faces.append(FaceCrop(crop_image(item.rgb, crop_box), box, crop_box, float(probs[i])))
        return faces

    def _big_enough(self, box: np.ndarray) -> bool:
        width, height = box[2] - box[0], box[3] - box[1]
        return bool(math.isfinite(width + height)) and (width + height) / 2 >= self.min_face_size

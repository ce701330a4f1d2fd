"""Face-crop geometry: from a detector box ``(x0, y0, x1, y1)`` to an integer crop box ``(x, y, w, h)``, and
cutting that box out of an image with its borders replicated.

Two conventions (`CROPS`):

- ``"unsup3d"``: the crop of Unsup3D's demo (``demo/demo.py``, ``Demo.detect_face``, github.com/elliottwu/unsup3d),
  which LatentFace's ``webimage_recrop.py`` reuses to re-crop the VoxCeleb frames of Stage 2. With an MTCNN box
  of width ``bw`` and height ``bh`` and centre ``(cx, cy)``: the half side is
  ``c = floor((bh + bw) / 2 / 2 * 1.1)`` (1.1 times the mean side, halved, truncated as the demo's ``int()``), the
  crop is the square of side ``2c`` with top-left corner ``(floor(cx) - c, floor(cy + 0.15 c) - c)``, i.e. centred
  on the box and moved down by 0.15 c so that the chin is inside. Pixels outside the image repeat the nearest
  border pixel (the demo pads with ``np.pad(mode="edge")``). Where the demo misbehaves this module does not: a
  box centre above or left of the image (a negative padded index, which the demo's ``int()`` and numpy slicing
  get wrong) and a crop reaching more than ``c`` past the bottom or right border (the demo then returns a
  non-square crop) are both cut as the full square with replicated borders.
- ``"celeba"``: the form of Unsup3D's CelebA crop list (``data/celeba_crop_bbox.txt``, rows ``name split x0 y0 w
  h``, square boxes cut with ``cv2.BORDER_REPLICATE`` padding and resized to 128 px by ``data/celeba_crop.py``;
  `latentface.data.CelebA` reads that list). Unsup3D does not publish how the list's boxes were made from the
  CelebA images (unsup3d issue #30 asks; the repository does not say), so no rule reproduces them from a detector
  box. `celeba_crop_box` therefore makes the detector box itself into such a row: the square of side
  ``scale * mean side`` centred on the box, moved down by ``shift`` times the half side, rounded to the nearest
  pixel (halves up); the defaults (``scale=1``, ``shift=0``) give the detector's own face square, which is tighter
  than Unsup3D's training crops. Use ``"unsup3d"`` to feed a model trained on Unsup3D's CelebA crops or
  LatentFace's VoxCeleb re-crops.

`crop_image` cuts any integer box, so ``crop_image(image, (x0, y0, w, h), 128)`` with a crop-list row does what
``celeba_crop.py`` does, up to the resampling filter (antialiased bilinear here, cv2's plain bilinear there) and
the JPEG re-encoding of its output.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from latentface.preprocess.images import to_rgb8

__all__ = ["CROPS", "UNSUP3D_SCALE", "UNSUP3D_SHIFT", "celeba_crop_box", "crop_box_for", "crop_image",
           "unsup3d_crop_box"]

CROPS = ("unsup3d", "celeba")
"""Crop conventions, as `crop_box_for` and `latentface.preprocess.faces.FaceDetector` name them."""

UNSUP3D_SCALE = 1.1
"""Unsup3D demo crop: side ``2c`` with ``c = UNSUP3D_SCALE * mean box side / 2``."""
UNSUP3D_SHIFT = 0.15
"""Unsup3D demo crop: the centre moves down by ``UNSUP3D_SHIFT * c``."""

Box = tuple[float, float, float, float]
IntBox = tuple[int, int, int, int]


def _check_box(box: Box) -> tuple[float, float, float, float]:
    """The box as four floats, checked: finite, ``x1 > x0`` and ``y1 > y0``.

    Raises:
        ValueError: the box is malformed (the message shows it).
    """
    if len(box) != 4:
        raise ValueError(f"a detector box is (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"detector box (x0, y0, x1, y1) must be finite with x1 > x0 and y1 > y0, got {box!r}")
    return x0, y0, x1, y1


def unsup3d_crop_box(box: Box) -> IntBox:
    """Unsup3D's demo crop of a detector box (module docstring).

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels.

    Returns:
        ``(x, y, side, side)``: the square crop, ``side`` even; it may extend past the image.

    Raises:
        ValueError: the box is malformed or too small to give a crop of at least 2 pixels.
    """
    x0, y0, x1, y1 = _check_box(box)
    half = math.floor(((y1 - y0) + (x1 - x0)) / 2 / 2 * UNSUP3D_SCALE)
    if half < 1:
        raise ValueError(f"detector box {box!r} is too small for an Unsup3D crop (half side {half})")
    top = math.floor((y0 + y1) / 2 + half * UNSUP3D_SHIFT) - half
    left = math.floor((x0 + x1) / 2) - half
    return left, top, 2 * half, 2 * half


def celeba_crop_box(box: Box, scale: float = 1.0, shift: float = 0.0) -> IntBox:
    """A detector box as a square CelebA crop-list row (module docstring).

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels.
        scale: side of the square over the box's mean side.
        shift: downward move of the centre, in half sides.

    Returns:
        ``(x, y, side, side)``; it may extend past the image.

    Raises:
        ValueError: the box is malformed, `scale` is not positive, or the square is under 1 pixel.
    """
    x0, y0, x1, y1 = _check_box(box)
    if not scale > 0 or not math.isfinite(shift):
        raise ValueError(f"scale must be positive and shift finite, got scale={scale!r}, shift={shift!r}")
    exact = scale * ((x1 - x0) + (y1 - y0)) / 2
    side = math.floor(exact + 0.5)
    if side < 1:
        raise ValueError(f"detector box {box!r} gives a CelebA crop under 1 pixel (side {exact:.3g})")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + shift * exact / 2
    return math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5), side, side


def crop_box_for(box: Box, crop: str) -> IntBox:
    """The integer crop box of a detector box in convention `crop` (one of `CROPS`).

    Raises:
        ValueError: unknown convention or malformed box.
    """
    if crop == "unsup3d":
        return unsup3d_crop_box(box)
    if crop == "celeba":
        return celeba_crop_box(box)
    raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")


def crop_replicate(pixels: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Crop (H, W, C) pixels to a box, replicating border pixels where the box leaves the image.

    Raises:
        ValueError: a box side is not positive.
    """
    if width < 1 or height < 1:
        raise ValueError(f"box sides must be positive, got width {width} and height {height}")
    rows = np.clip(np.arange(y, y + height), 0, pixels.shape[0] - 1)
    cols = np.clip(np.arange(x, x + width), 0, pixels.shape[1] - 1)
    return pixels[rows[:, None], cols[None, :]]


def crop_image(image: Image.Image, crop_box: IntBox, size: int | None = None) -> Image.Image:
    """Cut an integer box out of an image, replicating the border pixels where the box leaves it.

    Only the part of the image under the box is converted and copied, so a small crop of a huge image stays
    cheap; the output is RGB 8-bit whatever the input mode (`latentface.preprocess.images.to_rgb8`).

    Args:
        image: the source image (its pixel grid as is; no EXIF orientation is applied here).
        crop_box: ``(x, y, w, h)`` in pixels; any position, positive sides.
        size: when given, the crop is resized to ``size x size`` (antialiased bilinear).

    Returns:
        The crop, ``w x h`` (or ``size x size``) RGB.

    Raises:
        ValueError: a side of the box or `size` is not a positive integer.
    """
    if len(crop_box) != 4 or not all(isinstance(v, (int, np.integer)) for v in crop_box):
        raise ValueError(f"crop box must be four integers (x, y, w, h), got {crop_box!r}")
    x, y, w, h = (int(v) for v in crop_box)
    if w < 1 or h < 1:
        raise ValueError(f"crop box sides must be positive, got w={w}, h={h} in {crop_box!r}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    width, height = image.size
    # The pixels the clamped box touches: every replicated pixel is one of them.
    left, right = min(max(x, 0), width - 1), min(max(x + w - 1, 0), width - 1)
    top, bottom = min(max(y, 0), height - 1), min(max(y + h - 1, 0), height - 1)
    region = np.asarray(to_rgb8(image.crop((left, top, right + 1, bottom + 1))))
    out = Image.fromarray(np.ascontiguousarray(crop_replicate(region, x - left, y - top, w, h)), "RGB")
    if size is not None and (w, h) != (size, size):
        out = out.resize((size, size), Image.Resampling.BILINEAR)
    return out

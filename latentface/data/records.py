"""One image of an evaluation or encoding job: its file, optional label and optional face box, and how to load it.

Benchmark readers (RAF-DB, AffectNet, LFW, labelled folders) and the `latentface encode` command describe their
inputs as `ImageRecord`s, so one extraction pipeline serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from latentface.errors import InvalidImageError
from latentface.preprocess import read_image, to_batch
from latentface.preprocess.crops import crop_image


@dataclass(frozen=True)
class ImageRecord:
    """An image file with an optional class label and face box.

    Attributes:
        path: the image file.
        label: class index (0-based) or None.
        box: face box ``(x, y, width, height)`` in pixels of the decoded (EXIF-rotated) image, or None for the
            whole image. Parts of the box outside the image are filled by replicating the border pixels.
    """

    path: Path
    label: int | None = None
    box: tuple[int, int, int, int] | None = None


def load_record(
    record: ImageRecord, size: int, resize_mode: str = "stretch", resample: str = "bilinear"
) -> torch.Tensor:
    """Decode a record's image, crop its box (if any) and resize it.

    Args:
        record: the image and its box.
        size: output side.
        resize_mode: ``"stretch"`` or ``"center_crop"``.
        resample: ``"bilinear"`` or ``"bicubic"``.

    Returns:
        float32 tensor (3, size, size) in [0, 1].

    Raises:
        InvalidImageError: the file is missing, unreadable or not an image.
    """
    if record.box is None:
        return to_batch(record.path, size, resample, resize_mode)[0]
    try:
        image = read_image(record.path)
    except InvalidImageError as err:
        raise InvalidImageError(f"{str(record.path)!r}: {err}") from err
    except (OSError, ValueError) as err:
        raise InvalidImageError(f"{str(record.path)!r}: cannot read image: {err}") from err
    return to_batch(crop_image(image, record.box), size, resample, resize_mode)[0]

"""A picklable image -> tensor transform with a model's preprocessing, for ``DataLoader`` workers.

`create_transform` builds it from a `LatentFaceConfig` (`LatentFace.transform` from the model's own config); the
batches it makes, stacked, are what `LatentFace.forward` / `encode_batch` take, and are the same pixels
`LatentFace.encode` feeds the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from latentface.errors import InvalidImageError
from latentface.options import RESAMPLES, RESIZE_MODES, Resample, ResizeMode, check_option
from latentface.preprocess.images import ImageInput, to_batch

if TYPE_CHECKING:
    from latentface.config import LatentFaceConfig


@dataclass(frozen=True)
class ImageTransform:
    """Preprocessing of one image: read (paths), convert, check and resize to a (3, size, size) float32 tensor in
    [0, 1], as the weights were trained. A plain dataclass, so it pickles into DataLoader worker processes.

    Args:
        size: output side.
        resample: interpolation (antialiased when shrinking).
        resize_mode: ``"stretch"`` or ``"center_crop"``.

    Raises:
        ValueError: a bad setting.
    """

    size: int
    resample: Resample = "bilinear"
    resize_mode: ResizeMode = "stretch"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        check_option("resample", self.resample, RESAMPLES)
        check_option("resize_mode", self.resize_mode, RESIZE_MODES)

    def __call__(self, image: ImageInput) -> Tensor:
        """One image (PIL image, HWC array, CHW tensor in [0, 1] or uint8, or file path) -> (3, size, size).

        Raises:
            InvalidImageError: the image cannot be read or converted, or a batch was given.
        """
        batch = to_batch(image, self.size, self.resample, self.resize_mode)
        if len(batch) != 1:
            raise InvalidImageError(f"the transform takes one image, got a batch of {len(batch)}")
        return batch[0]


def create_transform(config: LatentFaceConfig) -> ImageTransform:
    """The `ImageTransform` of a model configuration (its size and saved preprocessing).

    Args:
        config: e.g. ``LatentFace.from_pretrained(...).config``.

    Returns:
        The transform.
    """
    return ImageTransform(config.image_size, config.preprocess.resample, config.preprocess.resize_mode)

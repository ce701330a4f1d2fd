"""Turning user images into the network's input: reading and converting images (`images`), the picklable
per-image transform for DataLoaders (`transform`), face-crop geometry (`crops`) and MTCNN face detection (`faces`,
needs ``pip install "latentface[face]"``).

The names of `crops` and `faces` are importable from here too; they load on first use, so importing this package
stays light and never imports ``latentface.data`` (which itself imports this package).
"""

from __future__ import annotations

import importlib
from typing import Any

from latentface.preprocess.images import (
    MIN_IMAGE_SIDE,
    ImageInput,
    Images,
    check_image_size,
    read_image,
    resize_square,
    to_batch,
    to_rgb8,
    upright,
)
from latentface.preprocess.transform import ImageTransform, create_transform

_LAZY = {
    "CROPS": "crops",
    "celeba_crop_box": "crops",
    "crop_image": "crops",
    "unsup3d_crop_box": "crops",
    "FaceCrop": "faces",
    "FaceDetector": "faces",
}

__all__ = [
    "MIN_IMAGE_SIDE",
    "ImageInput",
    "ImageTransform",
    "Images",
    "check_image_size",
    "create_transform",
    "read_image",
    "resize_square",
    "to_batch",
    "to_rgb8",
    "upright",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"latentface.preprocess.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'latentface.preprocess' has no attribute {name!r}")

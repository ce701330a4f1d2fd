"""Image datasets for Stage 1: any folder of images, and CelebA prepared as Unsup3D prepares it.

Items are dicts: ``image`` float32 (3, S, S) in [0, 1], ``index`` (int, the item actually read: see
`latentface.data.policy` for what replaces an unreadable file), ``path`` (str) and ``skipped`` (str, the item's
own unreadable file and why, or ``""``). No augmentation happens here: Unsup3D's random horizontal flip is the
training loop's job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentface.data.files import IMAGE_SUFFIXES, check_folder, check_resize, list_images, load_image
from latentface.data.policy import SkippingDataset, read_file
from latentface.preprocess import read_image, resize_square

CELEBA_SPLITS = ("train", "val", "test")
"""CelebA splits, in the order of the crop list's split column (0, 1, 2)."""

_FOLDER_LAYOUT = f"a folder with image files ({', '.join(IMAGE_SUFFIXES)}, any case), searched recursively"
_CROPPED_LAYOUT = ("Unsup3D's prepared CelebA crops, ROOT/{train,val,test}/*.jpg (written by its "
                   "data/celeba_crop.py), or the raw img_celeba folder with crop_list= its bounding-box list")


class ImageFolder(SkippingDataset):
    """Every image under a folder, recursively, in natural order of the relative paths.

    Args:
        root: the folder.
        image_size: output side S.
        resize_mode: ``"stretch"`` to S x S ignoring the aspect ratio (Unsup3D's loader) or ``"center_crop"``
            (the largest centred square first).
        resample: ``"bilinear"`` or ``"bicubic"`` (antialiased when shrinking).
        on_error: ``"skip"`` or ``"raise"`` for unreadable files (`latentface.data.policy`).

    Raises:
        FileNotFoundError: the root is missing or not a folder.
        ValueError: it holds no image files, or a setting is invalid.
    """

    def __init__(self, root: str | os.PathLike, image_size: int = 64, *, resize_mode: str = "stretch",
                 resample: str = "bilinear", on_error: str = "skip") -> None:
        super().__init__(on_error)
        check_resize(image_size, resize_mode, resample)
        self.root = check_folder(root, _FOLDER_LAYOUT)
        self.paths = list_images(self.root)
        if not self.paths:
            raise ValueError(f"no image files under {str(self.root)!r}; expected {_FOLDER_LAYOUT}")
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.resample = resample

    def __len__(self) -> int:
        return len(self.paths)

    def load_item(self, index: int) -> dict[str, Any]:
        """Item ``index``: the image, its index and path."""
        path = self.paths[index]
        image = read_file(path, lambda p: load_image(p, self.image_size, self.resize_mode, self.resample))
        return {"image": image, "index": index, "path": str(path)}


@dataclass(frozen=True)
class CropBox:
    """One row of Unsup3D's CelebA crop list (``data/celeba_crop_bbox.txt``).

    Attributes:
        name: image file name inside ``img_celeba``.
        split: 0 train, 1 val, 2 test.
        x0, y0: top-left corner of the box in pixels (may lie outside the image).
        width, height: box size in pixels.
    """

    name: str
    split: int
    x0: int
    y0: int
    width: int
    height: int


def read_crop_list(path: str | os.PathLike) -> list[CropBox]:
    """Read Unsup3D's CelebA crop list: one box per line, six whitespace-separated columns
    ``name split x0 y0 width height`` (split 0 train, 1 val, 2 test); blank lines and ``#`` comments ignored.

    Returns:
        The boxes in file order.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a malformed line (file and line number named).
    """
    boxes: list[CropBox] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            try:
                if len(fields) != 6:
                    raise ValueError(f"expected 6 columns (name split x0 y0 width height), got {len(fields)}")
                box = CropBox(fields[0], *(int(v) for v in fields[1:]))
                if box.split not in (0, 1, 2) or box.width < 1 or box.height < 1:
                    raise ValueError("split must be 0, 1 or 2 and width, height positive")
            except ValueError as err:
                raise ValueError(f"{os.fspath(path)}:{number}: bad crop-list line {line.strip()!r}: {err}") from err
            boxes.append(box)
    return boxes


def crop_box(pixels: np.ndarray, box: CropBox) -> np.ndarray:
    """Crop (H, W, C) pixels to a box, replicating the border pixels where the box leaves the image
    (Unsup3D pads with ``cv2.BORDER_REPLICATE`` before cropping)."""
    rows = np.clip(np.arange(box.y0, box.y0 + box.height), 0, pixels.shape[0] - 1)
    cols = np.clip(np.arange(box.x0, box.x0 + box.width), 0, pixels.shape[1] - 1)
    return pixels[rows[:, None], cols[None, :]]


class CelebA(SkippingDataset):
    """CelebA face crops as Unsup3D trains on them (128 px crops of the in-the-wild images, resized to S).

    Two layouts:

    - ``crop_list=None``: ``root`` is Unsup3D's prepared folder, ``root/{train,val,test}/*.jpg``, written by its
      ``data/celeba_crop.py`` (128 x 128 crops); images are resized to S.
    - ``crop_list=PATH``: ``root`` is the raw ``img_celeba`` folder and PATH Unsup3D's ``celeba_crop_bbox.txt``
      (`read_crop_list`); each image of the split is cropped on the fly as ``celeba_crop.py`` does (box with
      replicated borders, resize to ``prepared_size``), then resized to S. Unsup3D stores the 128 px crops as
      JPEG (cv2, non-antialiased resize); here nothing is re-encoded and resizing is antialiased bilinear.

    Unsup3D's loader also flips training images at random; here the training loop does.

    Args:
        root: prepared folder or ``img_celeba`` (above).
        split: one of `CELEBA_SPLITS`.
        image_size: output side S (Unsup3D trains at 64).
        crop_list: the bounding-box list, for raw images.
        prepared_size: side of the intermediate crop (Unsup3D: 128); None resizes the crop straight to S.
        resample: ``"bilinear"`` or ``"bicubic"``.
        on_error: ``"skip"`` or ``"raise"`` for missing or unreadable images (`latentface.data.policy`).

    Raises:
        FileNotFoundError: the root, the split folder, the crop list or the split's first image is missing.
        ValueError: no images in the split, a malformed crop list, or an invalid setting.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 64, *,
                 crop_list: str | os.PathLike | None = None, prepared_size: int | None = 128,
                 resample: str = "bilinear", on_error: str = "skip") -> None:
        super().__init__(on_error)
        if split not in CELEBA_SPLITS:
            raise ValueError(f"split must be one of {CELEBA_SPLITS}, got {split!r}")
        check_resize(image_size, resample=resample)
        if prepared_size is not None:
            check_resize(prepared_size)
        self.root = check_folder(root, _CROPPED_LAYOUT)
        self.split = split
        self.image_size = image_size
        self.prepared_size = prepared_size
        self.resample = resample
        self.boxes: list[CropBox] | None = None
        if crop_list is None:
            folder = self.root / split
            if not folder.is_dir():
                raise FileNotFoundError(f"no split folder {str(folder)!r}; expected {_CROPPED_LAYOUT}")
            self.paths = list_images(folder)
        else:
            number = CELEBA_SPLITS.index(split)
            self.boxes = [box for box in read_crop_list(crop_list) if box.split == number]
            self.paths = [self.root / box.name for box in self.boxes]
            if self.paths and not self.paths[0].is_file():
                raise FileNotFoundError(f"{str(self.paths[0])!r}, the first {split} image of the crop list, is "
                                        f"missing: root must be the raw img_celeba folder the list names files in")
        if not self.paths:
            raise ValueError(f"no {split} images in {str(self.root)!r}; expected {_CROPPED_LAYOUT}")

    def __len__(self) -> int:
        return len(self.paths)

    def load_item(self, index: int) -> dict[str, Any]:
        """Item ``index``: the (cropped) image, its index and path."""
        path = self.paths[index]
        if self.boxes is None:
            image = read_file(path, lambda p: load_image(p, self.image_size, resample=self.resample))
        else:
            box = self.boxes[index]
            image = read_file(path, lambda p: self._crop(p, box))
        return {"image": image, "index": index, "path": str(path)}

    def _crop(self, path: Path, box: CropBox) -> torch.Tensor:
        pixels = np.asarray(read_image(path).convert("RGB"))
        image = torch.from_numpy(np.ascontiguousarray(crop_box(pixels, box))).permute(2, 0, 1).float() / 255.0
        if self.prepared_size is not None:
            image = resize_square(image, self.prepared_size, self.resample)
        return resize_square(image, self.image_size, self.resample)

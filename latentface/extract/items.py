"""Items of an encoding run: checking and decoding each record, in this process or in DataLoader workers.

A bad item (missing, empty, corrupt, truncated, damaged, not an image, too small) is never an error: it loads as
``None`` with the reason as its status. `ItemDataset` is picklable, so DataLoader worker processes decode the
images of the next batches while the model runs on the current one.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from latentface.data.records import ImageRecord, load_record
from latentface.errors import DamagedImageError, InvalidImageError
from latentface.paths import display_name
from latentface.preprocess.images import MIN_IMAGE_SIDE

OK = "ok"
"""Status of an encoded item; any other status is the reason it was skipped."""
DEFAULT_MIN_SIDE = MIN_IMAGE_SIDE
"""Smallest image (or face box) side, in pixels, that is encoded."""
MAX_DEFAULT_WORKERS = 8
"""Most DataLoader workers `default_workers` chooses."""
MIN_SHARE_FOR_WORKERS = 4
"""Fewest usable CPUs per encoding process for which `default_workers` chooses any worker."""


def load_item(
    record: ImageRecord,
    size: int,
    *,
    resize_mode: str = "stretch",
    resample: str = "bilinear",
    min_side: int = DEFAULT_MIN_SIDE,
) -> tuple[Tensor | None, str]:
    """Load one record for encoding, or say why it cannot be.

    Args:
        record: the image file and its optional box.
        size: network input side.
        resize_mode: the model's resize mode (`latentface.config.PreprocessConfig`).
        resample: the model's interpolation (`latentface.config.PreprocessConfig`).
        min_side: images (and boxes) with a shorter side are refused.

    Returns:
        ``(image, OK)`` with a (3, size, size) tensor in [0, 1], or ``(None, reason)``.
    """
    path = Path(record.path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, "missing file"
    except OSError as err:
        return None, f"cannot access file: {err.strerror or err}"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():  # damage Pillow warns of is reported by the full decode below
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
    except UnidentifiedImageError:
        return None, "not an image (unknown file format)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return None, f"unreadable image: {err}"
    if min(width, height) < min_side:
        return None, f"image too small ({width}x{height} px; the shorter side must be at least {min_side} px)"
    if record.box is not None and min(record.box[2:]) < min_side:
        return None, f"face box too small ({record.box[2]}x{record.box[3]} px; minimum side {min_side} px)"
    try:
        return load_record(record, size, resize_mode, resample), OK
    except InvalidImageError as err:
        damage = err if isinstance(err, DamagedImageError) else err.__cause__
        if isinstance(damage, DamagedImageError):
            return None, f"damaged image data: {damage.detail}"
        return None, f"corrupt or truncated image: {err.__cause__ or err}"
    except (OSError, ValueError, SyntaxError) as err:  # a decoder error load_record does not wrap
        return None, f"corrupt or truncated image: {err}"


def row_names(records: Sequence[ImageRecord], names: Sequence[str] | None) -> list[str]:
    """Row names as printable text: undecodable bytes of file names become ``\\xNN`` (`display_name`).

    Args:
        records: the inputs.
        names: a name per record, or None for the record paths.

    Returns:
        One name per record.

    Raises:
        ValueError: `names` and `records` differ in length.
    """
    if names is None:
        return [display_name(record.path) for record in records]
    if len(names) != len(records):
        raise ValueError(f"got {len(names)} names for {len(records)} records")
    return [display_name(name) for name in names]


@dataclass(frozen=True)
class LoadedBatch:
    """The items of one batch, loaded.

    Attributes:
        images: (B, 3, S, S) in [0, 1], a blank image in the place of each bad item; None when every item is bad.
        status: per item, `OK` or the reason it cannot be encoded.
        good: the positions of the items that were loaded (those with an image).
    """

    images: Tensor | None
    status: list[str]
    good: list[int]


def collate_items(items: Sequence[tuple[Tensor | None, str]]) -> LoadedBatch:
    """Stack loaded items into a `LoadedBatch` (the `DataLoader` ``collate_fn``; runs in the worker).

    Args:
        items: ``(image or None, status)`` per item, in batch order.

    Returns:
        The batch; bad items keep their place so that every item's noise depends on its position.
    """
    status = [why for _, why in items]
    good = [i for i, (image, _) in enumerate(items) if image is not None]
    if not good:
        return LoadedBatch(None, status, good)
    blank = torch.zeros_like(items[good[0]][0])
    return LoadedBatch(torch.stack([blank if image is None else image for image, _ in items]), status, good)


@dataclass(frozen=True)
class ItemDataset(Dataset):
    """Records as a map-style dataset of `load_item` results (picklable: DataLoader workers load the items).

    Attributes:
        records: the inputs.
        size: network input side.
        resize_mode: the model's resize mode.
        resample: the model's interpolation.
        min_side: smaller images or boxes are refused.
        skip: rows not to load, with the status to give them.
    """

    records: Sequence[ImageRecord]
    size: int
    resize_mode: str
    resample: str
    min_side: int
    skip: Mapping[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor | None, str]:
        if index in self.skip:
            return None, self.skip[index]
        return load_item(self.records[index], self.size, resize_mode=self.resize_mode, resample=self.resample,
                         min_side=self.min_side)


def default_workers(processes: int = 1) -> int:
    """Decoding workers per process when none are asked for: one core of each process's share is left to the model.

    Args:
        processes: processes on this machine that encode at the same time (``accelerate launch``).

    Returns:
        ``min(MAX_DEFAULT_WORKERS, share - 1)`` where ``share`` is the usable CPUs per process; 0 (decode in the
        encoding process) when the share is under `MIN_SHARE_FOR_WORKERS`, where a worker only competes with the
        model for the same cores.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = usable // max(1, processes)
    return min(MAX_DEFAULT_WORKERS, share - 1) if share >= MIN_SHARE_FOR_WORKERS else 0


def batch_loader(dataset: ItemDataset, batches: Sequence[range], workers: int) -> DataLoader:
    """A DataLoader that yields one `LoadedBatch` per entry of `batches`, in order.

    Args:
        dataset: the items.
        batches: the rows of each batch to load.
        workers: worker processes (0: load in this process); each loads whole batches, and up to two batches
            per worker are loaded ahead.

    Returns:
        The loader.
    """
    return DataLoader(dataset, batch_sampler=[list(rows) for rows in batches], collate_fn=collate_items,
                      num_workers=min(workers, len(batches)))

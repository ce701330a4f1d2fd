"""Stage-1 images read once (``data.cache_images``): every training image is rendered or decoded once and kept in
the run folder as 8-bit RGB (``images.pt``); training then reads that tensor instead of rendering SynthFaces (or
decoding files) at every step. What changes is the cost of a step and the 8-bit rounding of rendered images
(the same rounding as an exported or photographed image).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from latentface.fileio import write_atomic
from latentface.training.data import batch_tensor, skipped_files

CACHE_FILE = "images.pt"


class CachedImages(Dataset):
    """8-bit images (N, 3, S, S); item ``n`` is ``{"image": (3, S, S) float in [0, 1]}``."""

    def __init__(self, images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 (N, 3, S, S) images, got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"image": self.images[index].float() / 255}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        return [{"image": image} for image in (self.images[indices].float() / 255)]


def image_cache_key(settings: dict[str, Any]) -> str:
    """Hash of the settings that decide which images are read.

    Args:
        settings: JSON-serialisable data settings and image size.

    Returns:
        The SHA-256 hex digest of their sorted JSON.
    """
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def read_images(dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                progress: bool = False) -> tuple[CachedImages, int]:
    """Every image of `dataset`, in order, rounded to 8 bits.

    Returns:
        The images, and the number of unreadable files the reader skipped.
    """
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts, skipped = [], 0
    for batch in tqdm(loader, desc="reading images", disable=not (progress and sys.stderr.isatty())):
        skipped += len(skipped_files(batch))
        parts.append((batch_tensor(batch).clamp(0, 1) * 255).round().to(torch.uint8))
    return CachedImages(torch.cat(parts)), skipped


def save_cache(path: Path, key: str, images: CachedImages, skipped: int) -> None:
    """Write the cache atomically."""
    buffer = io.BytesIO()
    torch.save({"key": key, "images": images.images, "skipped": skipped}, buffer)
    write_atomic(path, buffer.getvalue())


def load_cache(path: Path, key: str) -> tuple[CachedImages, int] | None:
    """The cache at `path` if it exists and was made with `key`, else None."""
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("key") != key:
        return None
    return CachedImages(data["images"]), int(data["skipped"])

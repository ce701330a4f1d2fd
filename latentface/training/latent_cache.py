"""Stage-2 latents encoded once (``data.cache_latents``): the frozen Stage 1 maps every clip, and its mirror image,
to its texture and shape latents, stored in the run folder; the RDMs then train on those instead of encoding
every clip at every step. The losses are the same (Stage 1 is frozen); what changes is the cost of a step.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from latentface.fileio import write_atomic
from latentface.hashing import state_dict_digest
from latentface.model import LatentFace
from latentface.outputs import Latents
from latentface.training.data import batch_tensor, skipped_files

CACHE_FILE = "latents.pt"


class ClipLatents(Dataset):
    """Latents of N clips of T frames: item ``n`` is ``{"albedo": (V, T, D), "depth": (V, T, D)}`` where view 0 is
    the clip as read and view 1 (present when mirrors were encoded) its horizontal mirror image.

    Args:
        albedo: (N, V, T, D) texture latents.
        depth: (N, V, T, D) shape latents.
    """

    def __init__(self, albedo: Tensor, depth: Tensor) -> None:
        if albedo.ndim != 4 or albedo.shape[:3] != depth.shape[:3]:
            raise ValueError(f"expected (N, V, T, D) latents, got {tuple(albedo.shape)} and {tuple(depth.shape)}")
        self.albedo = albedo
        self.depth = depth

    def __len__(self) -> int:
        return len(self.albedo)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"albedo": self.albedo[index], "depth": self.depth[index]}

    @property
    def views(self) -> int:
        """Views stored per clip: 1, or 2 with the mirror image."""
        return self.albedo.shape[1]


def select_views(batch: dict[str, Tensor], flip: Tensor) -> Latents:
    """The (B, T, D) latents of a collated `ClipLatents` batch, mirrored where `flip` (B,) is True."""
    view = flip.long().to(batch["albedo"].device)
    if bool(view.any()) and batch["albedo"].shape[1] < 2:
        raise ValueError("a flip was drawn but the cache holds no mirrored latents (encoded with flip_prob = 0)")
    rows = torch.arange(len(view), device=view.device)
    return Latents(texture=batch["albedo"][rows, view], shape=batch["depth"][rows, view])


def latent_cache_key(model: LatentFace, settings: dict[str, Any]) -> str:
    """Hash of the settings that decide which clips are encoded and of the Stage-1 weights (the RDMs excluded).

    Args:
        model: the model whose frozen Stage 1 encodes the clips.
        settings: JSON-serialisable data and encoding settings.

    Returns:
        `latentface.hashing.state_dict_digest` of the settings (sorted JSON) and the Stage-1 tensors.
    """
    header = json.dumps(settings, sort_keys=True)
    return state_dict_digest(model.state_dict(), header, skip=("albedo_rdm.", "depth_rdm."))


@torch.no_grad()
def encode_clips(model: LatentFace, dataset: Dataset, *, mirror: bool, batch_size: int = 8, num_workers: int = 0,
                 device: torch.device | str = "cpu", progress: bool = False) -> tuple[ClipLatents, int]:
    """Encode every clip of `dataset` (in order) with the model's Stage-1 encoders.

    Args:
        model: the frozen Stage-1 model (left in its current mode and on its device).
        dataset: a clip dataset (items with ``frames`` (T, 3, S, S), or ``image`` for SynthFaces clips).
        mirror: also encode each clip's horizontal mirror image (needed when training flips clips).
        batch_size: clips per encoder call.
        num_workers: DataLoader worker processes.
        device: where the frames are encoded (the model's device).
        progress: show a progress bar on a terminal.

    Returns:
        The latents, and the number of unreadable files the reader skipped while assembling the clips.
    """
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    albedo, depth, skipped = [], [], 0
    for batch in tqdm(loader, desc="encoding clips", disable=not (progress and sys.stderr.isatty())):
        skipped += len(skipped_files(batch))
        clips = batch_tensor(batch).to(device)
        b, t = clips.shape[:2]
        views = [clips, clips.flip(-1)] if mirror else [clips]
        codes = [model.encode_batch(v.flatten(0, 1)) for v in views]
        albedo.append(torch.stack([c.texture.view(b, t, -1) for c in codes], dim=1).float().cpu())
        depth.append(torch.stack([c.shape.view(b, t, -1) for c in codes], dim=1).float().cpu())
    return ClipLatents(torch.cat(albedo), torch.cat(depth)), skipped


def save_cache(path: Path, key: str, latents: ClipLatents, skipped: int) -> None:
    """Write the cache atomically."""
    buffer = io.BytesIO()
    torch.save({"key": key, "albedo": latents.albedo, "depth": latents.depth, "skipped": skipped}, buffer)
    write_atomic(path, buffer.getvalue())


def load_cache(path: Path, key: str) -> tuple[ClipLatents, int] | None:
    """The cache at `path` if it exists and was made with `key`, else None."""
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("key") != key:
        return None
    return ClipLatents(data["albedo"], data["depth"]), int(data["skipped"])

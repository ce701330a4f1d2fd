"""Clip datasets for Stage 2: VoxCeleb1 face tracks and generic folders of frame folders.

Item ``n`` is a clip of T = ``clip_length`` frames of video ``n``:

- ``frames``: float32 (T, 3, S, S) in [0, 1];
- ``identity``: int, index of the video's identity (group) among those listed, in natural order of their names;
- ``video``: str, the video folder relative to the root (``/``-separated);
- ``start``: int, index of the first frame of the clip in the video (frames in natural order of file names);
- ``frame_indices``: int64 (T,), the frame indices of the clip, ascending;
- ``index``: int, the item actually read, and ``skipped``: str, the item's own unreadable frame or ``""``
  (`latentface.data.policy`).

How frames are drawn (``sampling``), from a generator seeded by ``(seed, epoch, n)`` so that a clip depends only
on those three numbers, never on the worker process or the reading order:

- ``"random"`` (default, as the official LatentFace Stage-2 loader): T frame indices drawn uniformly *with
  replacement* from the whole video, then sorted;
- ``"consecutive"``: T consecutive frames from an offset drawn uniformly in [0, frames - T].

Call `set_epoch` before creating each epoch's `DataLoader` iterator for new clips every epoch (worker processes
copy the dataset when the iterator starts; with ``persistent_workers=True`` they keep the epoch they copied).
Videos with fewer than T frames are dropped at construction (listed in ``dropped``). No flip here: the
training loop augments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentface.data.files import check_folder, check_resize, list_images, load_image, subfolders
from latentface.data.policy import SkippingDataset, read_file

SAMPLINGS = ("random", "consecutive")
"""Accepted values of ``sampling``."""

VOXCELEB_VERSION = "1.6"
"""The version folder of the VoxCeleb1 face-track archive (``unzippedFaces/<identity>/1.6/<video>/``)."""

_VOXCELEB_LAYOUT = f"VoxCeleb1 tracks, ROOT/<identity>/{VOXCELEB_VERSION}/<video>/<frame>.jpg (ROOT: unzippedFaces)"
_CLIP_LAYOUT = "one folder per clip holding its frames, ROOT/<clip>/<frame>.jpg or ROOT/<group>/<clip>/<frame>.jpg"


@dataclass(frozen=True)
class Clip:
    """A video of a clip dataset.

    Attributes:
        name: its folder relative to the root, ``/``-separated.
        identity: index of its identity (group).
        frames: its frame files in natural order.
    """

    name: str
    identity: int
    frames: tuple[Path, ...]


class ClipDataset(SkippingDataset):
    """Base of the clip datasets: sampling, decoding and the item format (module docstring).

    Args:
        videos: ``(group, name, frames)`` of every video found; those with fewer than ``clip_length`` frames are
            dropped, groups are numbered in natural order among the videos kept.
        layout: the expected layout, quoted in errors.
        clip_length: frames per clip T.
        image_size: output side S.
        sampling: one of `SAMPLINGS`.
        seed: seed of the frame draws (non-negative).
        resize_mode: ``"stretch"`` or ``"center_crop"``.
        resample: ``"bilinear"`` or ``"bicubic"``.
        on_error: ``"skip"`` or ``"raise"`` (`latentface.data.policy`).

    Raises:
        ValueError: no video found, every video too short, or an invalid setting.
    """

    def __init__(self, videos: list[tuple[str, str, list[Path]]], layout: str, clip_length: int, image_size: int,
                 sampling: str, seed: int, resize_mode: str, resample: str, on_error: str) -> None:
        super().__init__(on_error)
        if clip_length < 1:
            raise ValueError(f"clip_length must be at least 1, got {clip_length}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        check_resize(image_size, resize_mode, resample)
        if not videos:
            raise ValueError(f"no video folders with frames found; expected {layout}")
        kept = [v for v in videos if len(v[2]) >= clip_length]
        if not kept:
            longest = max(len(v[2]) for v in videos)
            raise ValueError(f"all {len(videos)} videos have fewer than clip_length={clip_length} frames "
                             f"(the longest has {longest})")
        groups = {group: i for i, group in enumerate(dict.fromkeys(group for group, _, _ in kept))}
        self.clips = [Clip(name, groups[group], tuple(frames)) for group, name, frames in kept]
        self.identities = list(groups)
        self.dropped = [name for _, name, frames in videos if len(frames) < clip_length]
        self.clip_length = clip_length
        self.image_size = image_size
        self.sampling = sampling
        self.seed = seed
        self.epoch = 0
        self.resize_mode = resize_mode
        self.resample = resample

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Draw the clips of epoch ``epoch`` (non-negative) from now on."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def frame_indices(self, index: int) -> np.ndarray:
        """The frame indices (T,), ascending, of item ``index`` in the current epoch."""
        count = len(self.clips[index].frames)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.sampling == "random":
            return np.sort(rng.integers(0, count, self.clip_length))
        start = int(rng.integers(0, count - self.clip_length + 1))
        return np.arange(start, start + self.clip_length)

    def load_item(self, index: int) -> dict[str, Any]:
        """Item ``index``: its clip, identity, video name and frame indices."""
        clip = self.clips[index]
        indices = self.frame_indices(index)
        unique, inverse = np.unique(indices, return_inverse=True)
        decoded = [read_file(clip.frames[i], self._load_frame) for i in unique]
        frames = torch.stack(decoded)[torch.from_numpy(inverse)]
        return {"frames": frames, "identity": clip.identity, "video": clip.name, "start": int(indices[0]),
                "frame_indices": torch.from_numpy(indices).long(), "index": index}

    def _load_frame(self, path: Path) -> torch.Tensor:
        return load_image(path, self.image_size, self.resize_mode, self.resample)


class VoxCelebTracks(ClipDataset):
    """VoxCeleb1 face tracks, ``root/<identity>/1.6/<video>/<frame>.jpg`` (the archive's ``unzippedFaces``).

    The official LatentFace Stage-2 loader reads the frames re-cropped by its ``webimage_recrop.py``
    (``<frame>_recrop.png`` beside each ``<frame>.jpg``) by keeping only file names containing ``"recrop"``;
    ``recrop="recrop"`` does the same. Identity folders without a ``1.6`` folder are ignored.

    Args:
        root: the ``unzippedFaces`` folder (or a split of it with the same layout).
        clip_length: frames per clip T; videos with fewer (after the ``recrop`` filter) are dropped.
        image_size: output side S.
        recrop: keep only frame files whose name contains this string; None keeps every image file (with
            re-crops beside the originals, that mixes both).
        sampling: ``"random"`` or ``"consecutive"`` (module docstring).
        seed: seed of the frame draws.
        resize_mode: ``"stretch"`` or ``"center_crop"``.
        resample: ``"bilinear"`` or ``"bicubic"``.
        on_error: ``"skip"`` or ``"raise"`` (`latentface.data.policy`).

    Raises:
        FileNotFoundError: the root is missing.
        ValueError: no ``<identity>/1.6/<video>`` folder with frames, every video too short, or a bad setting.
    """

    def __init__(self, root: str | os.PathLike, clip_length: int = 16, image_size: int = 64, *,
                 recrop: str | None = None, sampling: str = "random", seed: int = 0, resize_mode: str = "stretch",
                 resample: str = "bilinear", on_error: str = "skip") -> None:
        self.root = check_folder(root, _VOXCELEB_LAYOUT)
        self.recrop = recrop
        videos = []
        for identity in subfolders(self.root):
            tracks = identity / VOXCELEB_VERSION
            if tracks.is_dir():
                for video in subfolders(tracks):
                    frames = list_images(video, recursive=False, contains=recrop)
                    if frames:
                        videos.append((identity.name, video.relative_to(self.root).as_posix(), frames))
        layout = _VOXCELEB_LAYOUT + (f" with {recrop!r} in the frame names" if recrop else "")
        super().__init__(videos, layout, clip_length, image_size, sampling, seed, resize_mode, resample, on_error)


class ClipFolder(ClipDataset):
    """Clips stored as folders of frames: ``root/<clip>/<frame>`` (each clip its own identity) or nested
    ``root/<group>/<clip>/<frame>`` (identity = the group). Frames are ordered naturally (``2.png`` before
    ``10.png``).

    Args:
        root: the folder.
        clip_length: frames per clip T; clips with fewer are dropped.
        image_size: output side S.
        nested: True for ``<group>/<clip>/<frame>``, False for ``<clip>/<frame>``; None detects it: nested when no
            subfolder of the root holds images itself (an error when some hold images and others only folders).
        sampling: ``"random"`` or ``"consecutive"`` (module docstring).
        seed: seed of the frame draws.
        resize_mode: ``"stretch"`` or ``"center_crop"``.
        resample: ``"bilinear"`` or ``"bicubic"``.
        on_error: ``"skip"`` or ``"raise"`` (`latentface.data.policy`).

    Raises:
        FileNotFoundError: the root is missing.
        ValueError: no clip folder with frames, a mixed layout while detecting, every clip too short, or a bad
            setting.
    """

    def __init__(self, root: str | os.PathLike, clip_length: int = 16, image_size: int = 64, *,
                 nested: bool | None = None, sampling: str = "random", seed: int = 0, resize_mode: str = "stretch",
                 resample: str = "bilinear", on_error: str = "skip") -> None:
        self.root = check_folder(root, _CLIP_LAYOUT)
        children = {child: list_images(child, recursive=False) for child in subfolders(self.root)}
        if nested is None:
            holding = [child.name for child, frames in children.items() if frames]
            grouping = [child.name for child, frames in children.items() if not frames and subfolders(child)]
            if holding and grouping:
                raise ValueError(f"{str(self.root)!r} mixes clip folders (such as {holding[0]!r}) with group folders "
                                 f"(such as {grouping[0]!r}): pass nested=True or nested=False")
            nested = not holding
        self.nested = nested
        videos = []
        for child, frames in children.items():
            if not nested:
                videos.append((child.name, child.name, frames))
                continue
            for clip in subfolders(child):
                videos.append((child.name, f"{child.name}/{clip.name}", list_images(clip, recursive=False)))
        videos = [video for video in videos if video[2]]
        super().__init__(videos, _CLIP_LAYOUT, clip_length, image_size, sampling, seed, resize_mode, resample,
                         on_error)

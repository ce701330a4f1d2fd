"""SynthFaces on disk: the export behind ``latentface synth`` and a dataset that reads it back.

Layout of an export folder ``OUT``::

    OUT/manifest.json
    OUT/<split>/<identity>/<clip>/<frame>.png   RGB image, 8 bits
    OUT/<split>/<identity>/<clip>/<frame>.npz   ground truth: every other key of `ITEM_KEYS`

with ``<identity>`` = 5 digits, ``<clip>`` = 3 digits and ``<frame>`` = 4 digits, so ``OUT/<split>`` is an
``<identity>/<clip>/<frame>`` tree as the video readers expect (VoxCeleb-like). Every file is written atomically
and ``manifest.json`` last, so a folder with a manifest is complete. The manifest records the format version,
seed, size, world settings, the split sizes, the names of the parameter columns, the library versions and the
list of frames (paths without suffix, relative to ``OUT``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from latentface.data.synthfaces.factors import (
    ACTIONS,
    EXPRESSIONS,
    IDENTITY_PARAMS,
    SPLITS,
    Factors,
    SynthConfig,
    check_split,
    sample_clip,
)
from latentface.data.synthfaces.render import ITEM_KEYS, SynthBatch, render_factors
from latentface.fileio import npz_bytes, write_atomic

FORMAT = "latentface-synthfaces"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def frame_stem(split: str, identity: int, clip: int, frame: int) -> str:
    """Path of a frame relative to the export folder, without suffix: ``<split>/<identity>/<clip>/<frame>``."""
    return f"{split}/{identity:05d}/{clip:03d}/{frame:04d}"


def _png_bytes(image: Tensor) -> bytes:
    array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_batch(out: Path, batch: SynthBatch) -> list[str]:
    stems = []
    for item in batch.items():
        stem = frame_stem(SPLITS[int(item["split"])], int(item["identity"]), int(item["clip"]), int(item["frame"]))
        write_atomic(out / f"{stem}.png", _png_bytes(item["image"]))
        arrays = {key: value.numpy() for key, value in item.items() if key != "image"}
        write_atomic(out / f"{stem}.npz", npz_bytes(arrays, compressed=True))
        stems.append(stem)
    return stems


def _clip_batches(seed: int, splits: Sequence[str], identities: int, clips: int, frames: int, config: SynthConfig,
                  batch_size: int) -> Iterator[Factors]:
    """Factors of every frame, clip after clip, grouped into batches of about `batch_size` frames (whole clips,
    one split per batch)."""
    for split in splits:
        pending: list[Factors] = []
        for identity in range(identities):
            for clip in range(clips):
                pending.append(sample_clip(seed, split, identity, clip, range(frames), config))
                if len(pending) * frames >= batch_size:
                    yield Factors.cat(pending)
                    pending = []
        if pending:
            yield Factors.cat(pending)


def export_synthfaces(
    out: str | Path,
    *,
    identities: int,
    clips_per_identity: int = 1,
    frames: int = 1,
    seed: int = 0,
    splits: Sequence[str] = ("train",),
    config: SynthConfig | None = None,
    overwrite: bool = False,
    batch_size: int = 128,
    progress: bool = False,
) -> Path:
    """Render SynthFaces clips and write them with their ground truth (layout in the module docstring).

    Frame ``f`` of clip ``k`` of identity ``i`` is the one `SynthFacesClips` renders, so the export and the
    on-the-fly datasets agree (up to the 8-bit quantisation of the PNG).

    Args:
        out: output folder.
        identities: identities per split.
        clips_per_identity: clips per identity.
        frames: frames per clip (1 for single images).
        seed: world seed.
        splits: splits to write, each with `identities` identities of its own.
        config: world settings (image size, ranges); default `SynthConfig()`.
        overwrite: allow writing into an existing non-empty folder (files of the same name are replaced, others
            are left alone; the new manifest lists this export's frames only).
        batch_size: frames rendered at once (whole clips).
        progress: show a progress bar on stderr.

    Returns:
        The output folder.

    Raises:
        ValueError: on a count below 1 or an unknown split.
        FileExistsError: `out` exists, is not empty and `overwrite` is False.
    """
    config = config or SynthConfig()
    for name, value in (("identities", identities), ("clips_per_identity", clips_per_identity), ("frames", frames),
                        ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    splits = [check_split(s) for s in dict.fromkeys(splits)]
    if not splits:
        raise ValueError("splits must name at least one split")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"output {str(out)!r} exists and is not empty (pass overwrite=True / --overwrite)")
    total = len(splits) * identities * clips_per_identity * frames
    stems: list[str] = []
    with tqdm(total=total, unit="img", disable=not progress) as bar:
        for factors in _clip_batches(seed, splits, identities, clips_per_identity, frames, config, batch_size):
            stems += _write_batch(out, render_factors(factors, config))
            bar.update(len(factors.frame))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": config.size,
        "config": dataclasses.asdict(config),
        "splits": {split: {"identities": identities, "clips_per_identity": clips_per_identity, "frames": frames,
                           "images": identities * clips_per_identity * frames} for split in splits},
        "counts": {"identities": len(splits) * identities, "clips": len(splits) * identities * clips_per_identity,
                   "images": total},
        "item_keys": list(ITEM_KEYS),
        "identity_params": list(IDENTITY_PARAMS),
        "actions": list(ACTIONS),
        "expressions": list(EXPRESSIONS),
        "versions": _versions(),
        "files": stems,
    }
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return out


def _versions() -> dict[str, str]:
    from latentface import __version__

    return {"latentface": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pillow": Image.__version__, "python": platform.python_version()}


def read_manifest(root: str | Path) -> dict:
    """The manifest of an export folder, checked for its format.

    Raises:
        FileNotFoundError: no ``manifest.json`` in `root`.
        ValueError: the manifest is not a SynthFaces manifest of a known version.
    """
    path = Path(root) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is not a {FORMAT} manifest of version {FORMAT_VERSION}")
    return manifest


def read_frame(root: str | Path, stem: str) -> dict[str, Tensor]:
    """One exported frame as the item dict of the generators (image from the PNG, in [0, 1])."""
    root = Path(root)
    with Image.open(root / f"{stem}.png") as png:
        image = torch.from_numpy(np.array(png.convert("RGB"))).permute(2, 0, 1).float() / 255
    with np.load(root / f"{stem}.npz") as data:
        item = {key: torch.from_numpy(data[key]) for key in data.files}
    item["image"] = image
    return {key: item[key] for key in ITEM_KEYS}


class SynthFacesFolder(Dataset):
    """An export folder read back: single frames, or whole clips.

    Args:
        root: export folder (with ``manifest.json``).
        split: split to read.
        clips: False: item n is the n-th frame of the split (manifest order: identity, clip, frame); True: item n
            is the n-th clip, its tensors stacked along a leading frame dimension.

    Items are dicts with the keys `ITEM_KEYS`, equal to the generators' up to the PNG's 8-bit image.
    """

    def __init__(self, root: str | Path, split: str = "train", *, clips: bool = False) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.split = check_split(split)
        if split not in self.manifest["splits"]:
            raise ValueError(f"{str(self.root)!r} has no split {split!r} (it has {sorted(self.manifest['splits'])})")
        stems = [s for s in self.manifest["files"] if s.split("/", 1)[0] == split]
        if clips:
            grouped: dict[str, list[str]] = {}
            for stem in stems:
                grouped.setdefault(stem.rsplit("/", 1)[0], []).append(stem)
            self.entries: list[list[str]] = list(grouped.values())
        else:
            self.entries = [[stem] for stem in stems]
        self.clips = clips

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        frames = [read_frame(self.root, stem) for stem in self.entries[index]]
        if not self.clips:
            return frames[0]
        return {key: torch.stack([f[key] for f in frames]) for key in ITEM_KEYS}

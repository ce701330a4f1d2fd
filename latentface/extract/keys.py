"""Identity of an encoding run: its settings, its key and the seed of each batch.

The run key hashes the weights, the settings and the input list (paths, boxes, labels, names, skip reasons, face
boxes, and the size and modification time of each file): an output or a chunk is reused only by a run with the
same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latentface.data.records import ImageRecord
from latentface.extract.items import DEFAULT_MIN_SIDE, row_names
from latentface.face_records import FaceBox
from latentface.hashing import seed_from
from latentface.hub import weights_digest
from latentface.model import LatentFace

FORMAT_VERSION = 1
"""Version of the chunk and output layout; part of the key."""


def batch_seed(seed: int, index: int) -> int:
    """Seed of batch `index`'s generator: a 63-bit hash of ``(seed, index)`` (`latentface.hashing.seed_from`).

    Args:
        seed: the run's seed.
        index: the batch.

    Returns:
        The seed.
    """
    return seed_from("latentface-encode", seed, index)


def run_settings(model: LatentFace, protocol: str, seed: int, batch_size: int, flip: bool,
                 min_side: int) -> dict[str, Any]:
    """The settings that decide a run's numbers (part of its key and of its output's metadata).

    Args:
        model: the weights (their preprocessing and sampler count).
        protocol: the encode protocol.
        seed: the noise seed.
        batch_size: records per batch.
        flip: whether the mirrored images are encoded.
        min_side: the smallest side encoded.

    Returns:
        The settings, JSON-serializable.
    """
    cfg = model.config
    return {
        "format": FORMAT_VERSION, "protocol": protocol, "seed": seed, "batch_size": batch_size, "flip": flip,
        "min_side": min_side, "image_size": cfg.image_size, "resample": cfg.preprocess.resample,
        "resize_mode": cfg.preprocess.resize_mode, "sampler": cfg.sampler, "steps": cfg.sampling_steps,
    }


def file_stamp(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def hash_run(weights: str, settings: Mapping[str, Any], records: Sequence[ImageRecord], names: Sequence[str],
             skip: Mapping[int, str], faces: Mapping[int, FaceBox] | None) -> str:
    """The key of a run from its parts (`run_key` computes them from a model and the arguments).

    Args:
        weights: `latentface.hub.weights_digest` of the model.
        settings: `run_settings`.
        records: the inputs.
        names: the row names.
        skip: rows not loaded, with their status.
        faces: the detected face of each row that has one, or None for a run without detection.

    Returns:
        A hex SHA-256.
    """
    digest = hashlib.sha256(json.dumps({"weights": weights, "settings": settings}, sort_keys=True).encode())
    for i, (record, name) in enumerate(zip(records, names, strict=True)):
        path = Path(record.path)
        label = None if record.label is None else int(record.label)
        box = None if record.box is None else [int(v) for v in record.box]
        row = [name, str(path), label, box, skip.get(i), file_stamp(path)]
        if faces is not None:
            row.append(faces[i].to_dict() if i in faces else None)
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()


def run_key(
    model: LatentFace,
    records: Sequence[ImageRecord],
    *,
    protocol: str,
    seed: int,
    batch_size: int,
    flip: bool = False,
    names: Sequence[str] | None = None,
    skip: Mapping[int, str] | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    faces: Mapping[int, FaceBox] | None = None,
) -> str:
    """Key of an encoding run: what `encode_records` stores in its output, and the benchmarks' feature-cache key.

    Args:
        model: the weights (hashed by `weights_digest`).
        records: the inputs; their paths, labels, boxes, and the size and modification time of each file count.
        protocol: as in `encode_records`.
        seed: as in `encode_records`.
        batch_size: as in `encode_records`.
        flip: as in `encode_records`.
        names: as in `encode_records`.
        skip: as in `encode_records`.
        min_side: as in `encode_records`.
        faces: as in `encode_records`.

    Returns:
        A hex SHA-256.
    """
    return hash_run(weights_digest(model), run_settings(model, protocol, seed, batch_size, flip, min_side), records,
                    row_names(records, names), skip or {}, faces)

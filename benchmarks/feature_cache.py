"""Cached, resumable feature extraction shared by the FER and verification benchmarks.

Features are encoded with `latentface.extract.encode_records` into a cache folder, one ``.npz`` per job named
``<tag>-<first 16 hex digits of the job's cache key>.npz``. The key hashes the weights, the extraction settings
(protocol, seed, batch size, flip, preprocessing) and every input file (path, label, box, size, modification time),
so a re-run with the same inputs reuses the file, a changed input or setting gets a new file, and a killed run
resumes from the batches it had finished (they are kept in a hidden chunk folder beside the output).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from harness import load_model

from latentface import LatentFace
from latentface.data.records import ImageRecord
from latentface.errors import WeightsError
from latentface.extract import OK, encode_records, load_output, run_key


def default_cache_dir() -> Path:
    """``$LATENTFACE_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/latentface/features`` (``~/.cache`` by default)."""
    explicit = os.environ.get("LATENTFACE_FEATURE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "latentface" / "features"


@dataclass(frozen=True)
class Extraction:
    """Features of one list of records, with what it cost.

    Attributes:
        features: (N, D) float32 features; rows of skipped records are NaN.
        status: per record, ``"ok"`` or the reason it was skipped.
        path: the cache file.
        reused: the cache file already held these features; nothing was encoded.
        computed_batches: batches encoded by this call (fewer than all when a killed run was resumed).
        batches: batches of the job.
        seconds: wall time of the call.
    """

    features: np.ndarray
    status: list[str]
    path: Path
    reused: bool
    computed_batches: int
    batches: int
    seconds: float

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: the records that were encoded."""
        return np.array([s == OK for s in self.status], dtype=bool)

    def summary(self) -> dict[str, Any]:
        """JSON-ready account: file, rows, encoded rows, reuse, batches and throughput.

        ``images_per_s`` (rows over wall time, image decoding included) is given only when this call encoded every
        batch; it is None for a reused or a resumed job.
        """
        full = self.computed_batches == self.batches
        return {
            "file": str(self.path), "rows": len(self.status), "ok": int(self.ok.sum()), "reused": self.reused,
            "computed_batches": self.computed_batches, "batches": self.batches, "seconds": self.seconds,
            "images_per_s": len(self.status) / self.seconds if full and self.seconds > 0 else None,
        }


def extract(
    model: LatentFace,
    records: Sequence[ImageRecord],
    cache_dir: Path,
    tag: str,
    *,
    protocol: str,
    batch_size: int,
    seed: int,
    flip: bool = False,
    weights_name: str | None = None,
    progress: bool = True,
) -> Extraction:
    """Features of `records`, read from the cache or encoded into it.

    Args:
        model: the weights, on the device to run on.
        records: the images, one feature row each, in this order.
        cache_dir: the cache folder (created if needed).
        tag: readable start of the cache file name (e.g. ``"rafdb-train-image"``).
        protocol: ``"fer"`` or ``"verification"`` (`LatentFace.features`).
        batch_size: images per batch (part of the key: batch ``i`` draws its noise from ``(seed, i)``).
        seed: seed of the RDM start noise.
        flip: encode the horizontally mirrored images.
        weights_name: recorded in the cache file's metadata.
        progress: progress bar on stderr.

    Returns:
        `Extraction`.
    """
    key = run_key(model, records, protocol=protocol, seed=seed, batch_size=batch_size, flip=flip)
    path = cache_dir / f"{tag}-{key[:16]}.npz"
    cache_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = encode_records(model, records, path, protocol=protocol, batch_size=batch_size, seed=seed, flip=flip,
                            weights_name=weights_name, progress=progress)
    seconds = time.perf_counter() - start
    arrays, _ = load_output(result.path)
    batches = -(-len(records) // batch_size)
    return Extraction(arrays["features"].astype(np.float32), list(result.status), result.path, result.reused,
                      result.computed_batches, batches, seconds)


def skipped_rows(names: Sequence[str | os.PathLike], status: Sequence[str], split: str) -> list[dict[str, str]]:
    """``{"split", "file", "reason"}`` for every row whose status is not ``"ok"``."""
    return [{"split": split, "file": str(name), "reason": reason}
            for name, reason in zip(names, status, strict=True) if reason != OK]


def throughput(extractions: Sequence[Extraction]) -> float | None:
    """Images per second over the extractions that were fully computed in this run (None when there are none)."""
    full = [e for e in extractions if e.computed_batches == e.batches and e.seconds > 0]
    if not full:
        return None
    return sum(len(e.status) for e in full) / sum(e.seconds for e in full)


def load_feature_model(name: str, device: Any, feature: str) -> LatentFace:
    """`harness.load_model`, refusing Stage-1-only weights: the released `feature` needs the RDM.

    Raises:
        WeightsError: the weights cannot be loaded or have no RDM.
    """
    model = load_model(name, device)
    if not model.config.has_rdm:
        raise WeightsError(f"weights {name!r} have no RDM (Stage 1 only); the {feature} feature needs Stage 2")
    return model

"""Reproducible random streams keyed by what they are for: the seed is a stable hash of a text key.

One stream per key (a SynthFaces identity, a training step, ...) makes the numbers independent of the order in
which streams are used, of batch sizes and of where a run was resumed.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch

SeedHash = Literal["blake2b", "sha256"]
"""The stable hashes a key may be hashed with."""

SEED_MASK = 2**63 - 1
"""Seeds are non-negative 63-bit integers (any torch generator accepts them)."""


def hashed_seed(key: str, algorithm: SeedHash = "blake2b") -> int:
    """The seed of the stream named `key`.

    Args:
        key: text naming the stream, e.g. ``"0/train/identity/5"``.
        algorithm: ``"blake2b"`` (an 8-byte BLAKE2b digest) or ``"sha256"`` (the first 8 bytes of its digest).
            Each user keeps the hash it was written with, so that its keys give the same numbers as before.

    Returns:
        The digest's 8 bytes read as a little-endian integer, top bit cleared.
    """
    if algorithm == "blake2b":
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    elif algorithm == "sha256":
        digest = hashlib.sha256(key.encode()).digest()[:8]
    else:
        raise ValueError(f"algorithm must be 'blake2b' or 'sha256', got {algorithm!r}")
    return int.from_bytes(digest, "little") & SEED_MASK


def hashed_generator(key: str, algorithm: SeedHash = "blake2b") -> torch.Generator:
    """A CPU generator seeded with `hashed_seed` of `key`.

    Args:
        key: text naming the stream.
        algorithm: the hash (see `hashed_seed`).

    Returns:
        A new `torch.Generator` on the CPU.
    """
    return torch.Generator().manual_seed(hashed_seed(key, algorithm))

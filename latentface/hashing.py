"""Stable hashes: seeds of random streams named by a key, and digests of state dicts.

Both are computed the same way on every machine and Python run (no ``hash()``, whose salt changes per process).
One stream per key (a SynthFaces identity, a training step, an encode batch) makes the numbers independent of the
order in which streams are used, of batch sizes and of where a run was resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

import torch

__all__ = ["SEED_MASK", "SeedHash", "hashed_generator", "hashed_seed", "seed_from", "state_dict_digest"]

SeedHash = Literal["blake2b", "sha256"]
"""The stable hashes a key may be hashed with."""

SEED_MASK = 2**63 - 1
"""Seeds are non-negative 63-bit integers (any torch generator accepts them)."""


def _digest8(key: str, algorithm: SeedHash) -> int:
    """The first 8 bytes of the key's digest (BLAKE2b: an 8-byte digest), read as a little-endian integer."""
    if algorithm == "blake2b":
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    elif algorithm == "sha256":
        digest = hashlib.sha256(key.encode()).digest()[:8]
    else:
        raise ValueError(f"algorithm must be 'blake2b' or 'sha256', got {algorithm!r}")
    return int.from_bytes(digest, "little")


def hashed_seed(key: str, algorithm: SeedHash = "blake2b") -> int:
    """The seed of the stream named `key`.

    Args:
        key: text naming the stream, e.g. ``"0/train/identity/5"``.
        algorithm: ``"blake2b"`` (SynthFaces) or ``"sha256"`` (training steps). Each user keeps the hash it was
            written with, so that its keys give the same numbers as before.

    Returns:
        The key's 8-byte digest with the top bit cleared (a seed in ``[0, SEED_MASK]``).
    """
    return _digest8(key, algorithm) & SEED_MASK


def hashed_generator(key: str, algorithm: SeedHash = "blake2b") -> torch.Generator:
    """A CPU generator seeded with `hashed_seed` of `key`.

    Args:
        key: text naming the stream.
        algorithm: the hash (see `hashed_seed`).

    Returns:
        A new `torch.Generator` on the CPU.
    """
    return torch.Generator().manual_seed(hashed_seed(key, algorithm))


def seed_from(*parts: object) -> int:
    """A 63-bit seed from a tuple of parts (e.g. a purpose name, a seed and an index); the encode batches' seeds.

    Args:
        parts: values written with ``str`` and joined by ``":"``; their order counts.

    Returns:
        The SHA-256 digest's first 8 bytes (little-endian) shifted right by one bit (not masked as in
        `hashed_seed`: the seeds of encode outputs written before stay the same).
    """
    return _digest8(":".join(str(part) for part in parts), "sha256") >> 1


def state_dict_digest(state_dict: Mapping[str, torch.Tensor], header: str = "", *,
                      skip: tuple[str, ...] = ()) -> str:
    """SHA-256 of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    Args:
        state_dict: the tensors (on any device; copied to the CPU to be read).
        header: text hashed before the tensors (e.g. the model's configuration as JSON).
        skip: name prefixes of tensors left out.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256(header.encode())
    for name, tensor in sorted(state_dict.items()):
        if name.startswith(skip):
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()

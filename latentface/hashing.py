"""Stable hashes: seeds of random streams from a tuple of parts, and digests of state dicts.

Both are computed the same way on every machine and Python run (no ``hash()``, whose salt changes per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

__all__ = ["seed_from", "state_dict_digest"]


def seed_from(*parts: object) -> int:
    """A 63-bit seed from a tuple of parts (e.g. a purpose name, a seed and an index).

    Args:
        parts: values written with ``str`` and joined by ``":"``; their order counts.

    Returns:
        The first 8 bytes of the SHA-256 of the joined text, read little-endian and shifted right by one bit, so
        that it fits a signed 64-bit integer (`torch.Generator.manual_seed`).
    """
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def state_dict_digest(state_dict: Mapping[str, torch.Tensor], header: str = "") -> str:
    """SHA-256 of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    Args:
        state_dict: the tensors (on any device; copied to the CPU to be read).
        header: text hashed before the tensors (e.g. the model's configuration as JSON).

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256(header.encode())
    for name, tensor in sorted(state_dict.items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()

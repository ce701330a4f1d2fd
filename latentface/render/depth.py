"""Canonical depth from the raw output of the shape decoder."""

from __future__ import annotations

from torch import Tensor


def canonical_depth(
    raw: Tensor, min_depth: float, max_depth: float, border_depth: float, border_columns: int
) -> Tensor:
    """Normalise raw depth as Unsup3D does.

    Subtract the per-image mean, apply tanh, rescale [-1, 1] to [min_depth, max_depth], and set the
    `border_columns` leftmost and rightmost columns to `border_depth`.

    Args:
        raw: (B, H, W) raw decoder output.
        min_depth, max_depth: depth range.
        border_depth: depth of the clamped border columns.
        border_columns: number of clamped columns on each side.

    Returns:
        (B, H, W) canonical depth.
    """
    d = (raw - raw.mean(dim=(1, 2), keepdim=True)).tanh()
    d = (1 + d) / 2 * max_depth + (1 - d) / 2 * min_depth
    if border_columns > 0:
        d = d.clone()
        d[:, :, :border_columns] = border_depth
        d[:, :, -border_columns:] = border_depth
    return d

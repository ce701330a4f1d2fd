"""Pinhole camera of Unsup3D.

Pixel convention, used everywhere in this package: pixel column j, row i has image coordinates
(u, v) = (j, i); the principal point is the image centre ((S-1)/2, (S-1)/2); sampling grids are normalised
by (S-1), i.e. ``grid_sample(..., align_corners=True)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def intrinsics(
    size: int, fov: float, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Camera matrix K (3, 3) for a square image of `size` pixels and field of view `fov` degrees."""
    c = (size - 1) / 2
    f = c / math.tan(math.radians(fov / 2))
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def pixel_grid(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Homogeneous pixel coordinates (H, W, 3) with entries (u, v, 1) = (j, i, 1)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=-1)


def backproject(depth: Tensor, fov: float) -> Tensor:
    """3D points (B, H, W, 3) of every pixel: ``depth * K^-1 [u, v, 1]``.

    Args:
        depth: (B, H, W) depth maps of square images.
        fov: field of view in degrees.
    """
    _, h, w = depth.shape
    k_inv = torch.linalg.inv(intrinsics(w, fov, depth.device, torch.float64)).to(depth.dtype)
    rays = pixel_grid(h, w, depth.device, depth.dtype) @ k_inv.T
    return rays * depth[..., None]

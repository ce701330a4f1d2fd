"""Warping the canonical view into a posed (input) view, as Unsup3D's reconstruction does.

The canonical depth becomes a grid mesh (two triangles per pixel quad), is posed, and its depth is rendered in
the target view. That depth is clamped to ``[min_depth - margin, max_depth + margin]`` with
``margin = (max_depth - min_depth) / 2``, back-projected, moved back by the inverse pose and projected into the
canonical image, which is then bilinearly sampled there (``align_corners=True``, the package's pixel
convention). Pixels whose rendered depth reaches ``max_depth + margin`` (nothing rendered there) are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.render.backends import get_rasterizer
from latentface.render.camera import backproject, intrinsics
from latentface.render.mesh import depth_to_mesh
from latentface.render.pose import inverse_transform_points, project, transform_points

FAR = 100.0
"""Depth written where no surface is rendered (Neural Mesh Renderer's far plane); clamped away afterwards."""


@dataclass
class PosedView:
    """A canonical face seen under a pose.

    Attributes:
        depth: (B, H, W) rendered depth after the clamp.
        grid: (B, H, W, 2) sampling grid into the canonical image (``align_corners=True``).
        mask: (B, H, W) bool, True where the face is rendered.
    """

    depth: Tensor
    grid: Tensor
    mask: Tensor


def posed_depth(canonical_depth: Tensor, rot: Tensor, trans: Tensor, fov: float, center_depth: float,
                renderer: str = "native") -> Tensor:
    """Depth (B, H, W) of the posed canonical depth mesh rendered in the target view (`FAR` where empty)."""
    _, h, w = canonical_depth.shape
    verts, faces = depth_to_mesh(canonical_depth, fov)
    k = intrinsics(w, fov, canonical_depth.device, canonical_depth.dtype)
    screen = project(transform_points(verts, rot, trans, center_depth), k)
    return get_rasterizer(renderer)(screen, faces, h, w, background=FAR).zbuf


def warp_view(canonical_depth: Tensor, rot: Tensor, trans: Tensor, fov: float, center_depth: float,
              min_depth: float, max_depth: float, renderer: str = "native") -> PosedView:
    """Render the posed depth and the grid that pulls canonical pixels into the target view.

    Args:
        canonical_depth: (B, H, W) canonical depth.
        rot, trans: pose, (B, 3, 3) and (B, 3) (see `latentface.render.pose.view_to_pose`).
        fov: field of view in degrees.
        center_depth: depth of the rotation centre.
        min_depth, max_depth: the depth range, which sets the clamp margin.
        renderer: rasterizer backend, ``"native"`` or ``"pytorch3d"`` (see `latentface.render.backends`).
    """
    _, h, w = canonical_depth.shape
    margin = (max_depth - min_depth) / 2
    depth = posed_depth(canonical_depth, rot, trans, fov, center_depth, renderer).clamp(
        min_depth - margin, max_depth + margin
    )
    points = inverse_transform_points(backproject(depth, fov).reshape(len(depth), -1, 3), rot, trans, center_depth)
    uv = project(points, intrinsics(w, fov, depth.device, depth.dtype))[..., :2].reshape(len(depth), h, w, 2)
    scale = torch.tensor([w - 1, h - 1], dtype=uv.dtype, device=uv.device)
    return PosedView(depth=depth, grid=uv / scale * 2 - 1, mask=depth < max_depth + margin)


def sample_canonical(canonical: Tensor, view: PosedView) -> Tensor:
    """Canonical maps (B, C, H, W) seen in the posed view (bilinear, zeros outside the canonical image)."""
    return F.grid_sample(canonical, view.grid, mode="bilinear", padding_mode="zeros", align_corners=True)

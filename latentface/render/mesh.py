"""Triangle meshes of depth grids (Unsup3D's ``get_face_idx``).

Vertex (i, j) of an H x W depth grid (row i, column j) has index ``i * W + j``. Each pixel quad with corners
(i, j), (i, j+1), (i+1, j), (i+1, j+1) is split along the diagonal from (i+1, j) to (i, j+1), as in Unsup3D,
into the triangles

    upper-left:  ((i, j), (i+1, j), (i, j+1))
    lower-right: ((i, j+1), (i+1, j), (i+1, j+1))

All upper-left triangles come first (quads in row-major order), then all lower-right ones, again as Unsup3D
orders them. Winding: in screen coordinates (u, v) = (j, i) every triangle has negative signed area
``(b - a) x (c - a)``, i.e. it runs counter-clockwise as the image is displayed (v pointing down). For a
surface seen by the camera, ``(b - a) x (c - a)`` in camera space points towards the camera (negative z).
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentface.render.camera import backproject


def grid_faces(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Faces of the triangulated H x W vertex grid.

    Args:
        height, width: grid size in vertices (at least 2 each for a non-empty mesh).
        device: device of the result.

    Returns:
        (2 (H-1) (W-1), 3) int64 vertex indices, layout and winding as in the module docstring.
    """
    idx = torch.arange(height * width, device=device).reshape(height, width)
    top_left, top_right = idx[:-1, :-1], idx[:-1, 1:]
    bottom_left, bottom_right = idx[1:, :-1], idx[1:, 1:]
    upper = torch.stack([top_left, bottom_left, top_right], dim=-1).reshape(-1, 3)
    lower = torch.stack([top_right, bottom_left, bottom_right], dim=-1).reshape(-1, 3)
    return torch.cat([upper, lower], dim=0)


def depth_to_mesh(depth: Tensor, fov: float) -> tuple[Tensor, Tensor]:
    """Triangle mesh of depth maps: one vertex per pixel, back-projected with `camera.backproject`.

    Args:
        depth: (B, H, W) depth maps of square images.
        fov: field of view in degrees.

    Returns:
        verts (B, H*W, 3) camera-space vertices (pixel (i, j) is vertex i*W + j) and faces
        (2 (H-1) (W-1), 3) from `grid_faces`, shared by the batch.
    """
    b, h, w = depth.shape
    verts = backproject(depth, fov).reshape(b, h * w, 3)
    return verts, grid_faces(h, w, depth.device)

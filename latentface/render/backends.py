"""Rasterizer backends behind one interface: ``"native"`` (pure PyTorch, always there) and ``"pytorch3d"``.

Both take screen-space vertices (u, v, z) in the package's pixel convention (pixel column j, row i sampled at
(u, v) = (j, i)) and return `latentface.render.raster.Fragments`. The PyTorch3D backend maps them to its
NDC convention (+x left, +y up, pixel centres at half-integers of its grid), calls ``rasterize_meshes`` with one
face per pixel, no blur and the same depth interpolation as the native one (perspective-correct by default:
``perspective_correct=True``, whose depth is Neural Mesh Renderer's ``1 / sum(w_k / z_k)``), and maps the result
back; its gradients are PyTorch3D's own. Coverage on exact edges and depth ties may differ between the two.

PyTorch3D has no wheels for current PyTorch on PyPI; install it from source (see the README) to use it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import torch
from torch import Tensor

from latentface.options import RENDERERS
from latentface.render.raster import Fragments, rasterize

Rasterizer = Callable[..., Fragments]

_MISSING = (
    "renderer='pytorch3d' needs PyTorch3D, which is not installed; see the README section "
    "'Optional: PyTorch3D renderer', or use renderer='native'"
)


def pytorch3d_available() -> bool:
    """Whether PyTorch3D can be imported."""
    return importlib.util.find_spec("pytorch3d") is not None


def _ndc(coord: Tensor, size: int, other: int) -> Tensor:
    """Pixel coordinate -> PyTorch3D NDC (its axes point left/up; the shorter image side spans [-1, 1])."""
    extent = 2.0 * max(size / other, 1.0)
    return extent / 2 - extent * (coord + 0.5) / size


def rasterize_pytorch3d(
    verts: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    *,
    background: float = math.inf,
    perspective_correct: bool = True,
) -> Fragments:
    """`latentface.render.raster.rasterize` computed by PyTorch3D's ``rasterize_meshes``.

    Args:
        verts: (B, V, 3) screen-space vertices (u, v, z).
        faces: (F, 3) long vertex indices shared by the batch.
        height, width: image size in pixels.
        background: depth where no face covers the pixel.
        perspective_correct: perspective-correct depth and weights (default), or screen-space linear ones.

    Returns:
        `Fragments` as the native rasterizer's (face indices are per mesh, -1 where empty).

    Raises:
        ImportError: PyTorch3D is not installed.
    """
    try:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as e:
        raise ImportError(_MISSING) from e
    b, n_faces = len(verts), len(faces)
    ndc = torch.stack([_ndc(verts[..., 0], width, height), _ndc(verts[..., 1], height, width), verts[..., 2]], -1)
    meshes = Meshes(verts=ndc, faces=faces[None].expand(b, -1, -1))
    pix_to_face, zbuf, bary, _ = rasterize_meshes(
        meshes, image_size=(height, width), blur_radius=0.0, faces_per_pixel=1, bin_size=0,
        perspective_correct=perspective_correct, cull_to_frustum=False,
    )
    covered = pix_to_face[..., 0] >= 0
    offsets = torch.arange(b, device=verts.device)[:, None, None] * n_faces
    face_index = torch.where(covered, pix_to_face[..., 0] - offsets, -1)
    zbuf = torch.where(covered, zbuf[..., 0], torch.full_like(zbuf[..., 0], background))
    bary = torch.where(covered[..., None], bary[..., 0, :], torch.zeros_like(bary[..., 0, :]))
    return Fragments(face_index=face_index, bary=bary, zbuf=zbuf)


def get_rasterizer(name: str) -> Rasterizer:
    """The rasterize function of a backend: ``"native"`` or ``"pytorch3d"`` (import checked here)."""
    if name == "native":
        return rasterize
    if name == "pytorch3d":
        if not pytorch3d_available():
            raise ImportError(_MISSING)
        return rasterize_pytorch3d
    raise ValueError(f"renderer must be one of {RENDERERS}, got {name!r}")

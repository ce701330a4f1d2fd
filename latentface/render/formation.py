"""Unsup3D's image formation from decoded factors: one function shared by `LatentFace.render` and training.

Canonical view: normals from the canonical depth, Lambertian shading under the light code, canonical image
``albedo * shading``. Posed view: the canonical depth mesh is posed, rendered and the canonical image pulled
into that view (`latentface.render.warp`). With ``flip=True`` the batch is doubled by Unsup3D's symmetry
branch: the horizontally flipped albedo and depth with the same light and pose, items ``B..2B-1``; the posed
mask then marks the pixels valid in *both* branches (``mask[i] = mask[i + B] = valid_i and valid_flip_i``), the
mask Unsup3D's losses use. Images are not multiplied by the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentface.config import LatentFaceConfig
from latentface.outputs import Rendering
from latentface.render.codes import decode_light
from latentface.render.pose import view_to_pose
from latentface.render.shading import normals_from_depth, shade
from latentface.render.warp import sample_canonical, warp_view


def form_image(
    albedo: Tensor,
    depth: Tensor,
    light: Tensor,
    view: Tensor | None,
    config: LatentFaceConfig,
    *,
    flip: bool = False,
    renderer: str = "native",
) -> Rendering:
    """Shade the canonical face and, given a pose, render it in that view (differentiable in every input).

    Args:
        albedo: (B, 3, H, W) canonical albedo in [0, 1] units.
        depth: (B, H, W) canonical depth (see `latentface.render.depth.canonical_depth`).
        light: (B, 4) light codes (see `latentface.render.codes`).
        view: (B, 6) pose codes, or None for the canonical view only.
        config: constants of the image formation (depth, light and pose ranges, field of view).
        flip: append the flipped branch (batch 2B, see the module docstring).
        renderer: rasterizer backend, ``"native"`` or ``"pytorch3d"``.

    Returns:
        `Rendering`; ``image``, ``depth``, ``normal``, ``mask`` and ``grid`` are None when `view` is None.
    """
    if flip:
        albedo = torch.cat([albedo, albedo.flip(-1)])
        depth = torch.cat([depth, depth.flip(-1)])
        light = light.repeat(2, 1)
        view = None if view is None else view.repeat(2, 1)
    normal = normals_from_depth(depth, config.fov)
    shading = shade(normal, *decode_light(light, config))
    out = Rendering(
        albedo=albedo,
        canonical_depth=depth,
        canonical_normal=normal.permute(0, 3, 1, 2),
        shading=shading,
        canonical_image=albedo * shading,
    )
    if view is None:
        return out
    rot, trans = view_to_pose(view, config.xyz_rotation_range, config.xy_translation_range, config.z_translation_range)
    posed = warp_view(depth, rot, trans, config.fov, config.rotation_center_depth, config.min_depth,
                      config.max_depth, renderer=renderer)
    out.image = sample_canonical(out.canonical_image, posed)
    out.depth = posed.depth
    out.normal = normals_from_depth(posed.depth, config.fov).permute(0, 3, 1, 2)
    out.grid = posed.grid
    mask = posed.mask
    if flip:
        both = mask.chunk(2)[0] & mask.chunk(2)[1]
        mask = torch.cat([both, both])
    out.mask = mask
    return out

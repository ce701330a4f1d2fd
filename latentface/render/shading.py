"""Normals from depth and Lambertian shading."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.render.camera import backproject

_EPS = 1e-7


def normals_from_depth(depth: Tensor, fov: float) -> Tensor:
    """Unit normals (B, H, W, 3) from depth maps (B, H, W), as Unsup3D's ``get_normal_from_depth``.

    Interior normals are the cross product of the central differences of the back-projected points along u
    and v; the one-pixel border gets (0, 0, 1).
    """
    points = backproject(depth, fov)
    du = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    dv = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    inner = torch.linalg.cross(du, dv, dim=-1).permute(0, 3, 1, 2)
    xy = F.pad(inner[:, :2], (1, 1, 1, 1), value=0.0)
    z = F.pad(inner[:, 2:], (1, 1, 1, 1), value=1.0)
    normal = torch.cat([xy, z], dim=1).permute(0, 2, 3, 1)
    return normal / (normal.pow(2).sum(-1, keepdim=True).sqrt() + _EPS)


def shade(normal: Tensor, ambient: Tensor, diffuse: Tensor, direction: Tensor) -> Tensor:
    """Lambertian shading (B, 1, H, W): ``ambient + diffuse * max(0, <normal, direction>)``.

    Args:
        normal: (B, H, W, 3) unit normals.
        ambient: (B,) ambient strength.
        diffuse: (B,) diffuse strength.
        direction: (B, 3) unit light direction.
    """
    cos = (normal * direction[:, None, None, :]).sum(-1).clamp(min=0)
    return (ambient[:, None, None] + diffuse[:, None, None] * cos)[:, None]

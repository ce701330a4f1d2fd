"""Rigid pose and perspective projection of Unsup3D.

Conventions (checked against Unsup3D's ``get_rotation_matrix``, ``get_transform_matrices``, ``rotate_pts``,
``translate_pts`` and ``get_inv_warped_3d_grid``):

- Camera space: x right (along u = j), y down (along v = i), z forward (depth); points are row vectors and a
  rotation acts as ``p' = R p`` (``points @ R.T``).
- Elementary rotations are right-handed, angle a in radians::

      Rx = [[1, 0, 0], [0, cos a, -sin a], [0, sin a, cos a]]
      Ry = [[cos a, 0, sin a], [0, 1, 0], [-sin a, 0, cos a]]
      Rz = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]

  and ``R = Rz @ Ry @ Rx`` (x applied first).
- The pose rotates about the centre c = (0, 0, center_depth) and then translates: ``p' = R (p - c) + c + T``.
  The inverse translates back first, then rotates by R^T about c: ``p = R^T (p' - T - c) + c``.
- Projection uses the intrinsics K of `latentface.render.camera` (pixel column j, row i is (u, v) = (j, i)):
  ``(u, v) = (fx x / z + cx, fy y / z + cy)``, with z carried along as the third coordinate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rotation_matrix(rx: Tensor, ry: Tensor, rz: Tensor) -> Tensor:
    """Rotation matrices ``R = Rz @ Ry @ Rx`` (Unsup3D's ``get_rotation_matrix``).

    Each elementary rotation is right-handed (see the module docstring): Rx has -sin at (1, 2), Ry has -sin at
    (2, 0), Rz has -sin at (0, 1).

    Args:
        rx, ry, rz: (B,) angles in radians about the x, y and z axes.

    Returns:
        (B, 3, 3) rotation matrices, in the dtype and on the device of the angles.
    """
    zero, one = torch.zeros_like(rx), torch.ones_like(rx)
    cx, sx = rx.cos(), rx.sin()
    cy, sy = ry.cos(), ry.sin()
    cz, sz = rz.cos(), rz.sin()
    m_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    m_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    m_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return m_z @ m_y @ m_x


def view_to_pose(
    view: Tensor, xyz_rotation_range_deg: float, xy_translation_range: float, z_translation_range: float
) -> tuple[Tensor, Tensor]:
    """Rotation and translation of the pose code, scaled as Unsup3D's ``forward``.

    Args:
        view: (B, 6) pose code (rx, ry, rz, tx, ty, tz), each roughly in [-1, 1].
        xyz_rotation_range_deg: degrees per unit of the three rotations.
        xy_translation_range: translation per unit of tx and ty.
        z_translation_range: translation per unit of tz.

    Returns:
        R (B, 3, 3) from `rotation_matrix` with angles ``view[:, :3] * range`` in radians, and T (B, 3) =
        ``(tx * xy_range, ty * xy_range, tz * z_range)``.
    """
    angles = view[:, :3] * math.radians(xyz_rotation_range_deg)
    rot = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    trans = torch.cat([view[:, 3:5] * xy_translation_range, view[:, 5:6] * z_translation_range], dim=1)
    return rot, trans


def _center(points: Tensor, center_depth: float) -> Tensor:
    return points.new_tensor([0.0, 0.0, center_depth])


def transform_points(points: Tensor, rot: Tensor, trans: Tensor, center_depth: float = 1.0) -> Tensor:
    """Apply the pose: rotate about (0, 0, center_depth), then translate: ``R (p - c) + c + T``.

    Args:
        points: (B, N, 3) camera-space points.
        rot: (B, 3, 3) rotations.
        trans: (B, 3) translations.
        center_depth: depth of the rotation centre on the optical axis.

    Returns:
        (B, N, 3) transformed points.
    """
    c = _center(points, center_depth)
    return (points - c) @ rot.transpose(1, 2) + c + trans[:, None, :]


def inverse_transform_points(points: Tensor, rot: Tensor, trans: Tensor, center_depth: float = 1.0) -> Tensor:
    """Undo `transform_points`: translate by -T, then rotate by R^T about (0, 0, center_depth).

    Args:
        points: (B, N, 3) transformed points.
        rot: (B, 3, 3) rotations of the pose.
        trans: (B, 3) translations of the pose.
        center_depth: depth of the rotation centre, as given to `transform_points`.

    Returns:
        (B, N, 3) points before the pose: ``R^T (p - T - c) + c``.
    """
    c = _center(points, center_depth)
    return (points - trans[:, None, :] - c) @ rot + c


def transform_normals(normals: Tensor, rot: Tensor) -> Tensor:
    """Rotate directions by the pose (translation and rotation centre do not apply): ``R n``.

    Args:
        normals: (B, N, 3) directions.
        rot: (B, 3, 3) rotations.

    Returns:
        (B, N, 3) rotated directions.
    """
    return normals @ rot.transpose(1, 2)


def project(points: Tensor, k: Tensor) -> Tensor:
    """Perspective projection to screen coordinates (u, v, z).

    Args:
        points: (B, N, 3) camera-space points with z != 0.
        k: (3, 3) or (B, 3, 3) intrinsics, e.g. `latentface.render.camera.intrinsics`.

    Returns:
        (B, N, 3): ``u = fx x / z + cx``, ``v = fy y / z + cy`` in pixels (u = column j, v = row i), and the
        depth z unchanged.
    """
    z = points[..., 2:]
    uv = ((points / z) @ k.transpose(-1, -2))[..., :2]
    return torch.cat([uv, z], dim=-1)


def unproject(screen: Tensor, k: Tensor) -> Tensor:
    """Inverse of `project`: ``z K^-1 [u, v, 1]``; on a per-pixel grid this is `camera.backproject`.

    Args:
        screen: (B, N, 3) screen coordinates (u, v, z).
        k: (3, 3) or (B, 3, 3) intrinsics.

    Returns:
        (B, N, 3) camera-space points.
    """
    k_inv = torch.linalg.inv(k.to(torch.float64)).to(screen.dtype)
    rays = torch.cat([screen[..., :2], torch.ones_like(screen[..., 2:])], dim=-1) @ k_inv.transpose(-1, -2)
    return rays * screen[..., 2:]

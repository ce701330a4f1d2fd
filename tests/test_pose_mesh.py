"""Pose, projection and depth-grid meshes (`latentface.render.pose`, `latentface.render.mesh`)."""

from __future__ import annotations

import math

import pytest
import torch

from latentface.render.camera import backproject, intrinsics, pixel_grid
from latentface.render.mesh import depth_to_mesh, grid_faces
from latentface.render.pose import (
    inverse_transform_points,
    project,
    rotation_matrix,
    transform_normals,
    transform_points,
    unproject,
    view_to_pose,
)

HALF_PI = math.pi / 2


def _angles(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, b, generator=g, dtype=torch.float64) * 2 - 1) * math.pi


def _pose(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rx, ry, rz = _angles(b, seed)
    trans = torch.randn(b, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) * 0.1
    return rotation_matrix(rx, ry, rz), trans


def _points(b: int, n: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(b, n, 3, generator=g, dtype=torch.float64) * 0.1
    p[..., 2] += 1.0
    return p


def test_identity_pose_leaves_points_unchanged() -> None:
    points = _points(2, 7)
    rot, trans = view_to_pose(torch.zeros(2, 6, dtype=torch.float64), 60.0, 0.1, 0.1)
    assert torch.equal(rot, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    assert torch.equal(trans, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(transform_points(points, rot, trans), points, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("axis", "point", "expected"),
    [
        # Ry(+90): (x, y, z) -> (z, y, -x) about the centre (0, 0, 1).
        (1, (0.0, 0.0, 2.0), (1.0, 0.0, 1.0)),
        (1, (1.0, 0.0, 1.0), (0.0, 0.0, 0.0)),
        # Rx(+90): (x, y, z) -> (x, -z, y).
        (0, (0.0, 0.0, 2.0), (0.0, -1.0, 1.0)),
        (0, (0.0, 1.0, 1.0), (0.0, 0.0, 2.0)),
        # Rz(+90): (x, y, z) -> (-y, x, z).
        (2, (1.0, 0.0, 1.0), (0.0, 1.0, 1.0)),
        (2, (0.0, 1.0, 1.5), (-1.0, 0.0, 1.5)),
    ],
)
def test_quarter_turns_about_the_rotation_centre(
    axis: int, point: tuple[float, float, float], expected: tuple[float, float, float]
) -> None:
    angles = torch.zeros(3, 1, dtype=torch.float64)
    angles[axis] = HALF_PI
    rot = rotation_matrix(*angles)
    p = torch.tensor([[point]], dtype=torch.float64)
    out = transform_points(p, rot, torch.zeros(1, 3, dtype=torch.float64), center_depth=1.0)
    torch.testing.assert_close(out, torch.tensor([[expected]], dtype=torch.float64), rtol=0, atol=1e-12)


def test_rotation_is_orthonormal_with_unit_determinant() -> None:
    rot = rotation_matrix(*_angles(16))
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(16, dtype=torch.float64), rtol=0, atol=1e-12)


def test_rotation_order_is_z_y_x() -> None:
    rx, ry, rz = _angles(4, seed=3)
    zero = torch.zeros_like(rx)
    m_x, m_y, m_z = rotation_matrix(rx, zero, zero), rotation_matrix(zero, ry, zero), rotation_matrix(zero, zero, rz)
    rot = rotation_matrix(rx, ry, rz)
    torch.testing.assert_close(rot, m_z @ m_y @ m_x, rtol=0, atol=1e-12)
    assert not torch.allclose(rot, m_x @ m_y @ m_z, atol=1e-3)
    # Non-commuting quarter turns: x first sends y to z, then y sends z to x.
    quarter = torch.full((1,), HALF_PI, dtype=torch.float64)
    r = rotation_matrix(quarter, quarter, torch.zeros(1, dtype=torch.float64))
    e_y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(r[0] @ e_y, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_elementary_rotation_signs() -> None:
    a = torch.tensor([0.3], dtype=torch.float64)
    zero = torch.zeros_like(a)
    c, s = math.cos(0.3), math.sin(0.3)
    expected = {
        0: [[1, 0, 0], [0, c, -s], [0, s, c]],
        1: [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        2: [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }
    for axis, m in expected.items():
        angles = [zero, zero, zero]
        angles[axis] = a
        rot = rotation_matrix(*angles)[0]
        torch.testing.assert_close(rot, torch.tensor(m, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("center_depth", [1.0, 0.5])
def test_inverse_transform_undoes_transform(center_depth: float) -> None:
    rot, trans = _pose(3)
    points = _points(3, 11)
    moved = transform_points(points, rot, trans, center_depth)
    assert not torch.allclose(moved, points)
    torch.testing.assert_close(inverse_transform_points(moved, rot, trans, center_depth), points, rtol=0, atol=1e-12)


def test_transform_rotates_then_translates() -> None:
    rot, trans = _pose(2)
    points = _points(2, 5)
    centre = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    expected = torch.einsum("bij,bnj->bni", rot, points - centre) + centre + trans[:, None]
    torch.testing.assert_close(transform_points(points, rot, trans), expected, rtol=0, atol=1e-12)


def test_normals_follow_the_rotation_only() -> None:
    rot, trans = _pose(2)
    points, directions = _points(2, 5), _points(2, 5, seed=4)
    difference = transform_points(points + directions, rot, trans) - transform_points(points, rot, trans)
    torch.testing.assert_close(transform_normals(directions, rot), difference, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("size", "fov"), [(8, 10.0), (64, 10.0), (5, 30.0)])
def test_project_inverts_backproject(size: int, fov: float) -> None:
    g = torch.Generator().manual_seed(size)
    depth = 0.9 + 0.2 * torch.rand(2, size, size, generator=g, dtype=torch.float64)
    points = backproject(depth, fov).reshape(2, -1, 3)
    screen = project(points, intrinsics(size, fov, dtype=torch.float64))
    grid = pixel_grid(size, size, dtype=torch.float64).reshape(1, -1, 3)
    torch.testing.assert_close(screen[..., :2], grid[..., :2].expand(2, -1, -1), rtol=0, atol=1e-11)
    assert torch.equal(screen[..., 2], depth.reshape(2, -1))


def test_unproject_matches_backproject() -> None:
    size, fov = 16, 10.0
    depth = 0.9 + 0.2 * torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    uv = pixel_grid(size, size)[..., :2].reshape(1, -1, 2).expand(3, -1, -1)
    screen = torch.cat([uv, depth.reshape(3, -1, 1)], dim=-1)
    expected = backproject(depth, fov).reshape(3, -1, 3)
    torch.testing.assert_close(unproject(screen, intrinsics(size, fov)), expected)
    torch.testing.assert_close(project(expected, intrinsics(size, fov)), screen)


@pytest.mark.parametrize(("rot_range", "xy_range", "z_range"), [(60.0, 0.1, 0.0), (30.0, 0.5, 0.2)])
def test_view_to_pose_scaling(rot_range: float, xy_range: float, z_range: float) -> None:
    view = torch.tensor([[0.5, -0.25, 1.0, 0.3, -0.7, 0.9], [-1.0, 0.1, 0.0, -0.2, 0.4, -0.5]], dtype=torch.float64)
    rot, trans = view_to_pose(view, rot_range, xy_range, z_range)
    angles = view[:, :3] * rot_range * math.pi / 180
    torch.testing.assert_close(rot, rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]), rtol=0, atol=1e-15)
    expected = torch.stack([view[:, 3] * xy_range, view[:, 4] * xy_range, view[:, 5] * z_range], dim=1)
    torch.testing.assert_close(trans, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("height", "width"), [(2, 2), (3, 5), (6, 4)])
def test_grid_faces_cover_every_quad(height: int, width: int) -> None:
    faces = grid_faces(height, width)
    assert faces.dtype == torch.int64
    assert faces.shape == (2 * (height - 1) * (width - 1), 3)
    triangles = [frozenset(f.tolist()) for f in faces]
    assert all(len(t) == 3 for t in triangles)
    for i in range(height - 1):
        for j in range(width - 1):
            quad = {i * width + j, i * width + j + 1, (i + 1) * width + j, (i + 1) * width + j + 1}
            inside = [t for t in triangles if t <= quad]
            assert len(inside) == 2
            assert inside[0] | inside[1] == quad
            # Unsup3D's diagonal: from (i+1, j) to (i, j+1).
            assert inside[0] & inside[1] == {(i + 1) * width + j, i * width + j + 1}


@pytest.mark.parametrize(("height", "width"), [(2, 2), (4, 7)])
def test_grid_faces_have_consistent_winding(height: int, width: int) -> None:
    faces = grid_faces(height, width)
    uv = pixel_grid(height, width, dtype=torch.float64).reshape(-1, 3)[:, :2]
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    ab, ac = b - a, c - a
    signed = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    assert torch.all(signed < 0)


def test_depth_to_mesh_of_a_flat_depth() -> None:
    size, fov = 6, 10.0
    depth = torch.full((2, size, size), 1.0, dtype=torch.float64)
    verts, faces = depth_to_mesh(depth, fov)
    assert verts.shape == (2, size * size, 3)
    assert torch.equal(faces, grid_faces(size, size))
    torch.testing.assert_close(verts, backproject(depth, fov).reshape(2, -1, 3), rtol=0, atol=0)
    tri = verts[:, faces]  # (B, F, 3, 3)
    normal = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    assert torch.all(normal[..., 2] < 0)  # fronto-parallel faces point towards the camera
    screen = project(verts, intrinsics(size, fov, dtype=torch.float64))[:, faces, :2]
    ab, ac = screen[:, :, 1] - screen[:, :, 0], screen[:, :, 2] - screen[:, :, 0]
    assert torch.all(ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0] < 0)

"""Warping the canonical view into a posed view (Unsup3D's input-view reconstruction)."""

from __future__ import annotations

import math

import torch

from latentface.render.camera import backproject, intrinsics
from latentface.render.pose import project, rotation_matrix, transform_points
from latentface.render.warp import posed_depth, sample_canonical, warp_view


def _bumpy_depth(b: int = 2, s: int = 32) -> torch.Tensor:
    v, u = torch.meshgrid(torch.linspace(-1, 1, s, dtype=torch.float64), torch.linspace(-1, 1, s, dtype=torch.float64),
                          indexing="ij")
    return (1.0 - 0.05 * torch.exp(-(u**2 + v**2) * 3)).expand(b, s, s).clone()


def _identity(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.eye(3, dtype=torch.float64).expand(b, 3, 3), torch.zeros(b, 3, dtype=torch.float64)


def test_identity_pose_reproduces_the_canonical_view() -> None:
    depth = _bumpy_depth()
    rot, trans = _identity(2)
    view = warp_view(depth, rot, trans, fov=10.0, center_depth=1.0, min_depth=0.9, max_depth=1.1)
    # Vertices sit on pixel centres; the mesh's last row and column lie on its outer edges, which the half-open
    # coverage rule gives to no triangle: those pixels are invalid, every other one is valid.
    expected_mask = torch.ones(2, 32, 32, dtype=torch.bool)
    expected_mask[:, -1] = False
    expected_mask[:, :, -1] = False
    assert torch.equal(view.mask, expected_mask)
    torch.testing.assert_close(view.depth[expected_mask], depth[expected_mask], atol=1e-9, rtol=0)
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    recon = sample_canonical(image, view)
    torch.testing.assert_close(recon.permute(0, 2, 3, 1)[expected_mask], image.permute(0, 2, 3, 1)[expected_mask],
                               atol=1e-9, rtol=0)


def test_posed_depth_matches_the_transformed_vertices() -> None:
    depth = _bumpy_depth(1, 24)
    angle = torch.tensor([math.radians(8.0)], dtype=torch.float64)
    rot = rotation_matrix(torch.zeros_like(angle), angle, torch.zeros_like(angle))
    trans = torch.tensor([[0.01, -0.005, 0.0]], dtype=torch.float64)
    rendered = posed_depth(depth, rot, trans, fov=10.0, center_depth=1.0)
    # Where a posed vertex lands exactly on a pixel centre the rendered depth is that vertex's depth; check that
    # every rendered pixel lies within the posed vertices' depth range and that the footprint moved.
    posed = project(transform_points(backproject(depth, 10.0).reshape(1, -1, 3), rot, trans, 1.0), intrinsics(24, 10.0,
                    dtype=torch.float64))
    covered = rendered < 100.0
    assert covered.sum() > 0.6 * 24 * 24
    assert rendered[covered].min() >= posed[..., 2].min() - 1e-9
    assert rendered[covered].max() <= posed[..., 2].max() + 1e-9
    assert not covered[0, :, -1].all()  # turned and shifted: the right-most column is no longer fully covered


def test_empty_pixels_are_masked_and_clamped() -> None:
    depth = _bumpy_depth(1, 16)
    rot, _ = _identity(1)
    trans = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64)  # far to the side: nothing lands in the image
    view = warp_view(depth, rot, trans, fov=10.0, center_depth=1.0, min_depth=0.9, max_depth=1.1)
    assert not view.mask.any()
    torch.testing.assert_close(view.depth, torch.full_like(view.depth, 1.2))


def test_warp_is_differentiable_in_depth_and_image() -> None:
    depth = _bumpy_depth(1, 12).requires_grad_()
    image = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([math.radians(5.0)], dtype=torch.float64)
    rot = rotation_matrix(angle, angle, torch.zeros_like(angle))
    view = warp_view(depth, rot, torch.zeros(1, 3, dtype=torch.float64), 10.0, 1.0, 0.9, 1.1)
    (sample_canonical(image, view) * view.mask[:, None]).sum().backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0
    assert image.grad is not None and image.grad.abs().sum() > 0


def _sphere_depth(s: int, radius: float, center: float) -> torch.Tensor:
    """Depth along each pixel's ray to the near side of a sphere centred on the optical axis."""
    rays = backproject(torch.ones(1, s, s, dtype=torch.float64), 10.0)  # z = 1 on every ray
    # |t r - c|^2 = radius^2 with c = (0, 0, center): t^2 |r|^2 - 2 t center + center^2 - radius^2 = 0
    a = rays.pow(2).sum(-1)
    disc = center**2 - a * (center**2 - radius**2)
    return (center - disc.sqrt()) / a  # t, which is also the depth since r_z = 1


def test_rotating_a_sphere_about_its_centre_renders_the_same_sphere() -> None:
    s, radius, center = 32, 0.2, 1.2
    depth = _sphere_depth(s, radius, center)
    angle = torch.tensor([math.radians(15.0)], dtype=torch.float64)
    rot = rotation_matrix(0.5 * angle, angle, torch.zeros_like(angle))
    rendered = posed_depth(depth, rot, torch.zeros(1, 3, dtype=torch.float64), fov=10.0, center_depth=center)
    covered = rendered < 100.0
    assert 0.5 * s * s < covered.sum() < s * s  # the cap moved: part of the image is no longer covered
    # The mesh is piecewise planar: its error is second order in the pixel spacing.
    assert (rendered[covered] - depth[covered]).abs().max() < 1e-4


def _plane_depth(s: int, normal: torch.Tensor, offset: float) -> torch.Tensor:
    """Depth along each pixel's ray to the plane ``normal . X = offset``."""
    rays = backproject(torch.ones(1, s, s, dtype=torch.float64), 10.0)  # z = 1 on every ray
    return offset / (rays @ normal)


def test_posed_plane_renders_its_exact_depth() -> None:
    # A depth map of a 3D plane is a planar mesh; posed, it is still a plane, and the rendered depth at every
    # covered pixel centre is where that pixel's ray meets it (perspective-correct, as Neural Mesh Renderer).
    s = 32
    normal = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    depth = _plane_depth(s, normal, 1.0)
    angle = torch.tensor([math.radians(20.0)], dtype=torch.float64)
    rot = rotation_matrix(0.5 * angle, angle, torch.zeros_like(angle))
    trans = torch.tensor([[0.01, -0.02, 0.03]], dtype=torch.float64)
    rendered = posed_depth(depth, rot, trans, fov=10.0, center_depth=1.0)
    # The posed plane: n' = R n, and a point X maps to R (X - c) + c + T.
    centre = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    posed_normal = rot[0] @ normal
    point = backproject(depth, 10.0)[0, 0, 0]  # any point of the canonical plane
    posed_offset = float(posed_normal @ (rot[0] @ (point - centre) + centre + trans[0]))
    exact = _plane_depth(s, posed_normal, posed_offset)
    covered = rendered < 100.0
    assert covered.sum() > 0.6 * s * s
    torch.testing.assert_close(rendered[covered], exact[covered], atol=1e-10, rtol=0)

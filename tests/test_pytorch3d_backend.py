"""The PyTorch3D rasterizer backend against the native one (runs only where PyTorch3D is installed)."""

from __future__ import annotations

import math

import pytest
import torch

from latentface.render.backends import get_rasterizer, rasterize_pytorch3d
from latentface.render.camera import intrinsics
from latentface.render.mesh import depth_to_mesh
from latentface.render.pose import project, rotation_matrix, transform_points
from latentface.render.raster import rasterize
from latentface.render.warp import warp_view

pytest.importorskip("pytorch3d")

from conftest import seeded_model, tiny_config


def _posed_grid(b: int, s: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.nn.functional.interpolate(torch.randn(b, 1, 5, 5, generator=g), size=(s, s), mode="bicubic",
                                          align_corners=True)[:, 0]
    depth = 1.0 + 0.08 * raw.tanh()
    angles = (torch.rand(b, 3, generator=g) * 2 - 1) * math.radians(25.0)
    rot = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    verts, faces = depth_to_mesh(depth, 10.0)
    screen = project(transform_points(verts, rot, torch.zeros(b, 3), 1.0), intrinsics(s, 10.0))
    return screen, faces, depth


@pytest.mark.parametrize("perspective_correct", [True, False])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40), (40, 24)])
def test_same_faces_depth_and_barycentrics(height: int, width: int, perspective_correct: bool) -> None:
    screen, faces, _ = _posed_grid(2, 32)
    native = rasterize(screen, faces, height, width, background=100.0, perspective_correct=perspective_correct)
    other = rasterize_pytorch3d(screen, faces, height, width, background=100.0,
                                perspective_correct=perspective_correct)
    agree = native.face_index == other.face_index
    # Only pixel centres on (or within float32 rounding of) an edge may go to a different triangle.
    assert agree.float().mean() > 0.99
    assert torch.equal(native.mask, other.mask) or (native.mask != other.mask).float().mean() < 0.01
    both = agree & native.mask
    torch.testing.assert_close(other.zbuf[both], native.zbuf[both], atol=5e-5, rtol=0)  # float32 NDC round trip
    torch.testing.assert_close(other.bary[both], native.bary[both], atol=1e-3, rtol=0)
    assert (other.zbuf[~other.mask] == 100.0).all() and (other.face_index[~other.mask] == -1).all()


def test_occlusion_and_gradients_agree() -> None:
    # Two overlapping triangles at different depths: the nearer wins in both backends.
    # Off-grid corners: no pixel centre lies exactly on an edge, where the backends' tie rules differ.
    verts = torch.tensor([[[2.3, 2.1, 2.0], [14.2, 3.4, 2.0], [5.1, 13.3, 2.0],
                           [3.2, 4.3, 1.0], [13.1, 6.2, 1.5], [8.4, 14.1, 1.2]]], requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    native = rasterize(verts, faces, 16, 16)
    other = rasterize_pytorch3d(verts, faces, 16, 16)
    agree = (native.face_index == other.face_index) & native.mask
    assert torch.equal(native.face_index, other.face_index)
    grads = []
    for frags in (native, other):
        (g,) = torch.autograd.grad((frags.zbuf * agree).sum() + (frags.bary[..., 0] * agree).sum(), verts)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3, rtol=1e-3)


def test_warp_and_model_render_with_pytorch3d() -> None:
    _, _, depth = _posed_grid(2, 32, seed=1)
    angles = torch.tensor([math.radians(15.0), math.radians(-10.0)])
    rot = rotation_matrix(angles, angles.flip(0), torch.zeros(2))
    trans = torch.tensor([[0.01, 0.0, 0.0], [0.0, -0.01, 0.0]])
    views = [warp_view(depth, rot, trans, 10.0, 1.0, 0.9, 1.1, renderer=r) for r in ("native", "pytorch3d")]
    agree = views[0].mask == views[1].mask
    assert agree.float().mean() > 0.99
    close = (views[0].depth - views[1].depth).abs() < 1e-4
    assert close.float().mean() > 0.99

    model = seeded_model(tiny_config())
    codes = model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        native = model.render(codes, view=model.pose_code(yaw=20.0))
        model.renderer = "pytorch3d"
        other = model.render(codes, view=model.pose_code(yaw=20.0))
    assert get_rasterizer("pytorch3d") is rasterize_pytorch3d
    both = native.mask & other.mask
    assert both.sum() > 0.98 * native.mask.sum()
    diff = (native.image - other.image).abs().amax(1)[both]
    assert diff.median() < 1e-4 and (diff < 1e-3).float().mean() > 0.98

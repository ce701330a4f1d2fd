"""Hard z-buffer rasterizer (`latentface.render.raster`): coverage, depth, visibility, batching, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from latentface.render.camera import intrinsics, pixel_grid
from latentface.render.pose import project
from latentface.render.raster import Fragments, interpolate, rasterize

SQUARE_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])


def _square(x0: float, y0: float, x1: float, y1: float, z: float = 1.0) -> torch.Tensor:
    """(1, 4, 3) corners of an axis-aligned square at constant depth, counter-clockwise in (u, v)."""
    return torch.tensor([[[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]], dtype=torch.float64)


def _grid_mesh(
    n: int, origin: tuple[float, float], axis_u: tuple[float, float], axis_v: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A regular n x n vertex grid mapped affinely to the image, with a smooth depth; (1, n*n, 3) and faces.

    Each quad is split along alternating diagonals so that both diagonal directions are exercised.
    """
    s, t = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    u = origin[0] + s * axis_u[0] + t * axis_v[0]
    v = origin[1] + s * axis_u[1] + t * axis_v[1]
    z = 2.0 + 0.1 * torch.sin(s / 5) * torch.cos(t / 7)
    verts = torch.stack([u, v, z], dim=-1).reshape(1, n * n, 3)
    i, j = torch.meshgrid(torch.arange(n - 1), torch.arange(n - 1), indexing="ij")
    a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
    flip = ((i + j) % 2 == 1)[..., None]
    first = torch.where(flip, torch.stack([a, b, d], -1), torch.stack([a, b, c], -1))
    second = torch.where(flip, torch.stack([b, c, d], -1), torch.stack([a, c, d], -1))
    return verts, torch.cat([first.reshape(-1, 3), second.reshape(-1, 3)])


def _coverage_count(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) number of faces covering each pixel centre: every face rasterized alone as one batch item."""
    alone = verts[0, faces]  # (F, 3, 3): batch item f is face f
    fragments = rasterize(alone, torch.tensor([[0, 1, 2]]), height, width)
    return fragments.mask.sum(0)


@pytest.mark.parametrize(
    ("corners", "rows", "cols"),
    [
        ((1.0, 2.0, 6.0, 5.0), range(2, 5), range(1, 6)),  # integer corners: half-open box [x0, x1) x [y0, y1)
        ((0.5, 1.5, 5.5, 6.5), range(2, 7), range(1, 6)),  # corners between centres
        ((-3.0, -2.2, 2.7, 3.0), range(3), range(3)),  # clipped by the image border
    ],
)
@pytest.mark.parametrize("order", [[0, 1, 2], [0, 2, 1], [2, 0, 1]], ids=["ccw", "cw", "rotated"])
def test_square_coverage_and_depth(
    corners: tuple[float, float, float, float], rows: range, cols: range, order: list[int]
) -> None:
    fragments = rasterize(_square(*corners, z=1.25), SQUARE_FACES[:, order], 8, 9)
    expected = torch.zeros(1, 8, 9, dtype=torch.bool)
    expected[0, rows.start : rows.stop, cols.start : cols.stop] = True
    assert torch.equal(fragments.mask, expected)
    assert torch.all(fragments.zbuf[expected] == 1.25)
    assert torch.all(fragments.zbuf[~expected] == math.inf)
    assert torch.all(fragments.face_index[~expected] == -1)
    assert torch.all(fragments.bary[~expected] == 0)
    assert torch.allclose(fragments.bary[expected].sum(-1), torch.ones(()).double())


def test_background_depth_and_dtype() -> None:
    fragments = rasterize(_square(1, 1, 3, 3).float(), SQUARE_FACES, 4, 4, background=7.5)
    assert fragments.zbuf.dtype == torch.float32 and fragments.bary.dtype == torch.float32
    assert fragments.face_index.dtype == torch.long
    assert fragments.zbuf[0, 0, 0] == 7.5 and fragments.zbuf[0, 1, 1] == 1


def _tilted_plane(fov: float, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A plane tilted about both image axes, seen through the package's camera; float64.

    Returns:
        screen-space vertices (1, 5, 3), faces (4, 3), camera-space vertices (1, 5, 3), and the exact
        camera-space point (size, size, 3) where each pixel centre's ray meets the plane.
    """
    normal = torch.tensor([0.45, -0.3, 1.0], dtype=torch.float64)
    offset = 2.0
    k = intrinsics(size, fov, dtype=torch.float64)

    def on_plane(uv: torch.Tensor) -> torch.Tensor:
        rays = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(k).T  # z component 1
        return rays * (offset / (rays @ normal))[..., None]

    last = size - 1
    corners = torch.tensor([[-0.3, 0.4], [last + 0.6, 1.2], [last - 0.3, last + 0.5], [0.8, last - 0.9],
                            [size / 2 - 0.8, size / 2 - 0.1]], dtype=torch.float64)
    points = on_plane(corners)[None]
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    exact = on_plane(pixel_grid(size, size, dtype=torch.float64)[..., :2])
    return project(points, k), faces, points, exact


@pytest.mark.parametrize("fov", [10.0, 60.0])
def test_tilted_plane_depth_is_the_ray_plane_intersection(fov: float) -> None:
    screen, faces, points, exact = _tilted_plane(fov, 16)
    fragments = rasterize(screen, faces, 16, 16)
    mask = fragments.mask[0]
    assert mask.sum() > 150
    torch.testing.assert_close(fragments.zbuf[0][mask], exact[..., 2][mask], atol=1e-12, rtol=0)
    # The perspective-correct weights are those of the 3D point: they interpolate camera-space positions exactly.
    torch.testing.assert_close(interpolate(points, faces, fragments)[0][mask], exact[mask], atol=1e-12, rtol=0)
    # Screen-space linear depth (the option) lies behind the plane inside every face, never in front of it.
    linear = rasterize(screen, faces, 16, 16, perspective_correct=False)
    assert torch.equal(linear.face_index, fragments.face_index)
    bias = (linear.zbuf - fragments.zbuf)[0][mask]
    assert bias.min() > -1e-12 and bias.max() > (1e-5 if fov == 10.0 else 1e-3)


def test_screen_linear_depth_and_barycentrics() -> None:
    a, b, c = 3.0, 0.05, -0.02
    uv = torch.tensor([[-0.3, 0.4], [10.6, 1.2], [9.7, 11.5], [0.8, 10.1], [5.2, 5.9]], dtype=torch.float64)
    verts = torch.cat([uv, (a + b * uv[:, 0] + c * uv[:, 1])[:, None]], dim=1)[None]
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    fragments = rasterize(verts, faces, 12, 12, perspective_correct=False)
    grid = pixel_grid(12, 12, dtype=torch.float64)[None]
    mask = fragments.mask
    assert mask.sum() > 80
    plane = a + b * grid[..., 0] + c * grid[..., 1]
    assert torch.allclose(fragments.zbuf[mask], plane[mask], atol=1e-12)
    # Interpolating the vertex positions returns the pixel centres themselves.
    centres = interpolate(verts[..., :2], faces, fragments)
    assert torch.allclose(centres[mask], grid[..., :2][mask], atol=1e-12)


@pytest.mark.parametrize("perspective_correct", [True, False])
def test_faces_behind_the_camera(perspective_correct: bool) -> None:
    # A vertex at z <= 0 has no perspective-correct depth: the face is not drawn; linear depth draws it.
    verts = torch.tensor([[[0.5, 0.5, 1.0], [7.5, 0.5, -0.5], [0.5, 7.5, 1.0], [0.5, 0.5, 2.0], [7.5, 0.5, 2.0],
                           [0.5, 7.5, 2.0]]])
    fragments = rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), 8, 8, perspective_correct=perspective_correct)
    assert fragments.mask.sum() > 20
    assert torch.all(fragments.face_index[fragments.mask] == (1 if perspective_correct else 0))


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_occlusion_nearest_wins(order: list[int]) -> None:
    near = [[1.0, 1.0, 2.0], [9.0, 2.0, 2.0], [3.0, 9.0, 2.0]]
    far = [[0.0, 0.0, 5.0], [10.0, 0.0, 5.0], [0.0, 10.0, 5.0]]
    tris = [far, near]
    verts = torch.tensor([tris[order[0]] + tris[order[1]]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    fragments = rasterize(verts, faces, 11, 11)
    near_index = order.index(1)
    near_alone = rasterize(torch.tensor([near]), faces[:1], 11, 11).mask
    far_alone = rasterize(torch.tensor([far]), faces[:1], 11, 11).mask
    assert torch.all(fragments.face_index[near_alone] == near_index)
    assert torch.all(fragments.zbuf[near_alone] == 2.0)
    assert torch.all(fragments.zbuf[far_alone & ~near_alone] == 5.0)
    assert torch.equal(fragments.mask, near_alone | far_alone)


def test_equal_depth_goes_to_smallest_face_index() -> None:
    tri = [[0.2, 0.3, 1.0], [7.6, 0.1, 1.0], [0.4, 7.7, 1.0]]
    verts = torch.tensor([tri + tri])
    fragments = rasterize(verts, torch.tensor([[3, 4, 5], [0, 2, 1]]), 8, 8)
    assert fragments.mask.sum() > 20
    assert torch.all(fragments.face_index[fragments.mask] == 0)


def test_huge_triangle_covers_whole_image() -> None:
    verts = torch.tensor([[[-1e4, -1e4, 1.0], [3e4, -1e4, 1.0], [-1e4, 3e4, 1.0]]], dtype=torch.float64)
    fragments = rasterize(verts, torch.tensor([[0, 1, 2]]), 48, 40)
    assert torch.all(fragments.face_index == 0)
    assert torch.allclose(fragments.zbuf, torch.ones(()).double())


@pytest.mark.parametrize("max_candidates", [2**24, 1000, 7])
def test_grid_mesh_has_no_holes(max_candidates: int) -> None:
    # 64 x 64 vertices, rotated and scaled to lie inside a 64 x 64 image.
    angle = 0.3
    step = 0.62
    axis_u = (step * math.cos(angle), step * math.sin(angle))
    axis_v = (-step * math.sin(angle), step * math.cos(angle))
    verts, faces = _grid_mesh(64, (20.3, 1.7), axis_u, axis_v)
    assert faces.shape == (2 * 63 * 63, 3)
    fragments = rasterize(verts.float(), faces, 64, 64, max_candidates=max_candidates)
    # Position of every pixel centre in grid coordinates (s, t); inside the footprint iff both in [0, 63].
    grid = pixel_grid(64, 64, dtype=torch.float64)[..., :2] - torch.tensor([20.3, 1.7], dtype=torch.float64)
    s = (grid[..., 0] * math.cos(angle) + grid[..., 1] * math.sin(angle)) / step
    t = (-grid[..., 0] * math.sin(angle) + grid[..., 1] * math.cos(angle)) / step
    inside = (s > 1e-3) & (s < 63 - 1e-3) & (t > 1e-3) & (t < 63 - 1e-3)
    outside = (s < -1e-3) | (s > 63 + 1e-3) | (t < -1e-3) | (t > 63 + 1e-3)
    assert inside.sum() > 1000
    assert torch.all(fragments.mask[0][inside])
    assert not torch.any(fragments.mask[0][outside])


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_grid_on_pixel_centres_is_covered_exactly_once(spacing: float) -> None:
    # Vertices on pixel centres: many centres lie exactly on shared edges and vertices.
    verts, faces = _grid_mesh(7, (1.0, 2.0), (spacing, 0.0), (0.0, spacing))
    count = _coverage_count(verts, faces, 16, 16)
    extent = int(6 * spacing)
    expected = torch.zeros(16, 16, dtype=torch.long)
    expected[2 : 2 + extent, 1 : 1 + extent] = 1
    assert torch.equal(count, expected)


def test_shared_edges_of_a_fan_are_covered_exactly_once() -> None:
    # Eight triangles around a vertex sitting on a pixel centre, with edges through other pixel centres.
    ring = [(8.0, 4.0), (8.0, 8.0), (4.0, 8.0), (0.0, 8.0), (0.0, 4.0), (0.0, 0.0), (4.0, 0.0), (8.0, 0.0)]
    verts = torch.tensor([[(4.0, 4.0, 1.0)] + [(u, v, 1.0) for u, v in ring]])
    faces = torch.tensor([[0, 1 + k, 1 + (k + 1) % 8] for k in range(8)])
    count = _coverage_count(verts, faces, 10, 10)
    expected = torch.zeros(10, 10, dtype=torch.long)
    expected[:8, :8] = 1
    assert torch.equal(count, expected)


def test_batch_items_have_their_own_vertices() -> None:
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(3, 6, 3, generator=g) * torch.tensor([12.0, 10.0, 1.0]) + torch.tensor([-1.0, -1.0, 1.0])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 4, 2], [5, 1, 3]])
    fragments = rasterize(verts, faces, 10, 12)
    assert fragments.mask.any(dim=(1, 2)).all()
    for b in range(3):
        alone = rasterize(verts[b : b + 1], faces, 10, 12)
        assert torch.equal(fragments.face_index[b], alone.face_index[0])
        assert torch.equal(fragments.zbuf[b], alone.zbuf[0])
        assert torch.equal(fragments.bary[b], alone.bary[0])
    assert not torch.equal(fragments.face_index[0], fragments.face_index[1])


@pytest.mark.parametrize(
    "tris",
    [
        [[[-5.0, -5.0, 1.0], [-1.0, -5.0, 1.0], [-5.0, 20.0, 1.0]]],  # left of the image
        [[[8.5, 0.0, 1.0], [30.0, 0.0, 1.0], [8.5, 9.0, 1.0]]],  # right of the last column
        [[[1.0, 1.0, 1.0], [3.0, 3.0, 1.0], [5.0, 5.0, 1.0]]],  # zero area, through pixel centres
        [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]],  # a point on a pixel centre
        [[[0.2, 0.3, 1.0], [0.8, 0.4, 1.0], [0.5, 0.9, 1.0]]],  # between pixel centres
        [[[1.0, 1.0, math.nan], [5.0, 1.0, 1.0], [1.0, 5.0, 1.0]]],  # not finite
    ],
)
def test_nothing_visible_gives_empty_image(tris: list) -> None:
    verts = torch.tensor(tris)
    faces = torch.tensor([[0, 1, 2]])
    fragments = rasterize(verts, faces, 8, 8, background=3.0)
    assert torch.all(fragments.face_index == -1)
    assert torch.all(fragments.zbuf == 3.0) and torch.all(fragments.bary == 0)
    assert torch.all(interpolate(verts, faces, fragments, background=-1.0) == -1.0)


def test_no_faces() -> None:
    verts = torch.zeros(2, 3, 3)
    faces = torch.zeros(0, 3, dtype=torch.long)
    fragments = rasterize(verts, faces, 5, 4)
    assert fragments.face_index.shape == (2, 5, 4) and torch.all(fragments.face_index == -1)
    assert interpolate(torch.ones(2, 3, 2), faces, fragments).shape == (2, 5, 4, 2)


def test_interpolate_values_background_and_gradients() -> None:
    verts = _square(0.5, 0.5, 4.5, 4.5)
    attributes = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 2.0]]], dtype=torch.float64, requires_grad=True
    )
    background = torch.tensor([-1.0, -2.0], dtype=torch.float64, requires_grad=True)
    fragments = rasterize(verts, SQUARE_FACES, 6, 6)
    out = interpolate(attributes, SQUARE_FACES, fragments, background=background)
    assert out.shape == (1, 6, 6, 2)
    mask = fragments.mask[0]
    assert torch.all(out[0][~mask] == background.detach())
    # Pixel (1, 1) at (u, v) = (1, 1) lies on the diagonal shared by both faces, 1/8 of the way from corner 0 to
    # corner 2; it belongs to face 0, which lies on the +u side of the diagonal.
    assert fragments.face_index[0, 1, 1] == 0
    assert torch.allclose(out[0, 1, 1], 0.875 * attributes.detach()[0, 0] + 0.125 * attributes.detach()[0, 2])
    out.sum().backward()
    assert torch.allclose(attributes.grad.sum(1)[0], mask.sum().double().expand(2))
    assert torch.allclose(background.grad, (~mask).sum().double().expand(2))


def _gradcheck_mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """Four triangles around an inner vertex, no pixel centre within 0.01 pixel of an edge line."""
    verts = torch.tensor(
        [[[0.31, 0.23, 2.0], [7.42, 0.61, 2.2], [6.83, 7.34, 1.9], [0.58, 6.71, 2.1], [3.52, 3.38, 1.7]]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    centres = pixel_grid(8, 8, dtype=torch.float64)[..., :2].reshape(-1, 1, 2)
    xy = verts[0, faces][..., :2]
    tail, head = xy, xy.roll(-1, dims=1)
    direction = head - tail
    rel = centres[:, None] - tail  # (P, F, 3, 2)
    distance = (direction[..., 0] * rel[..., 1] - direction[..., 1] * rel[..., 0]).abs() / direction.norm(dim=-1)
    assert distance.min() > 0.01
    return verts, faces


@pytest.mark.parametrize("perspective_correct", [True, False])
def test_gradcheck_zbuf_and_bary_wrt_verts(perspective_correct: bool) -> None:
    verts, faces = _gradcheck_mesh()
    verts.requires_grad_(True)

    def render(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fragments = rasterize(v, faces, 8, 8, background=0.0, perspective_correct=perspective_correct)
        return fragments.zbuf, fragments.bary

    assert rasterize(verts, faces, 8, 8).mask.sum() > 30
    assert torch.autograd.gradcheck(render, (verts,))


def test_gradcheck_interpolate_wrt_verts_and_attributes() -> None:
    verts, faces = _gradcheck_mesh()
    verts.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    attributes = torch.randn(1, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def render(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return interpolate(a, faces, rasterize(v, faces, 8, 8), background=0.5)

    assert torch.autograd.gradcheck(render, (verts, attributes))


def test_zbuf_gradient_of_a_plane() -> None:
    verts = _square(0.5, 0.5, 5.5, 5.5, z=2.0).requires_grad_(True)
    fragments = rasterize(verts, SQUARE_FACES, 8, 8)
    fragments.zbuf[fragments.mask].sum().backward()
    # Moving every vertex deeper by 1 moves every covered pixel deeper by 1.
    assert torch.allclose(verts.grad[..., 2].sum(), fragments.mask.sum().double())
    assert torch.allclose(verts.grad[..., :2], torch.zeros(()).double())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verts": torch.zeros(4, 3)}, "verts"),
        ({"verts": torch.zeros(1, 4, 3, dtype=torch.long)}, "verts"),
        ({"faces": torch.tensor([[0, 1, 2]], dtype=torch.int32)}, "faces"),
        ({"faces": torch.tensor([[0, 1, 4]])}, "face indices"),
        ({"height": 0}, "image size"),
        ({"max_candidates": 0}, "max_candidates"),
    ],
)
def test_invalid_inputs(kwargs: dict, message: str) -> None:
    args = {"verts": torch.zeros(1, 4, 3), "faces": SQUARE_FACES, "height": 4, "width": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        rasterize(**args)


@pytest.mark.cuda
@pytest.mark.parametrize("perspective_correct", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype: torch.dtype, perspective_correct: bool) -> None:
    verts, faces = _grid_mesh(32, (3.3, 1.7), (1.6, 0.4), (-0.4, 1.6))
    g = torch.Generator().manual_seed(2)
    verts = (verts + 0.2 * torch.rand(4, *verts.shape[1:], generator=g, dtype=torch.float64)).to(dtype)
    huge = torch.tensor([[[-1e3, -1e3, 2.05], [3e3, -1e3, 2.05], [-1e3, 3e3, 2.05]]], dtype=dtype).expand(4, 3, 3)
    verts = torch.cat([verts, huge], dim=1)
    n = verts.shape[1]
    faces = torch.cat([faces, torch.tensor([[n - 3, n - 2, n - 1]])])
    attributes = torch.randn(4, n, 3, generator=g, dtype=dtype)
    results = []
    for device in ("cpu", "cuda"):
        v = verts.to(device).requires_grad_(True)
        fragments = rasterize(v, faces.to(device), 48, 56, perspective_correct=perspective_correct,
                              max_candidates=5000)
        image = interpolate(attributes.to(device), faces.to(device), fragments)
        (image.sum() + fragments.zbuf.sum()).backward()
        results.append((fragments, image, v.grad))
    (cpu, cpu_image, cpu_grad), (gpu, gpu_image, gpu_grad) = results
    assert isinstance(gpu, Fragments)
    assert torch.equal(cpu.face_index, gpu.face_index.cpu())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(gpu.zbuf.cpu(), cpu.zbuf, atol=tol, rtol=tol)
    torch.testing.assert_close(gpu.bary.cpu(), cpu.bary, atol=tol, rtol=tol)
    torch.testing.assert_close(gpu_image.cpu(), cpu_image, atol=tol, rtol=tol)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad, atol=100 * tol, rtol=100 * tol)

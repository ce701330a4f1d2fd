"""Unsup3D image formation shared by `LatentFace.render` and training (`latentface.render.formation`)."""

from __future__ import annotations

import pytest
import torch
from conftest import seeded_model, tiny_config

from latentface import LatentFaceConfig
from latentface.render import form_image, normals_from_depth, pose_code
from latentface.render.backends import get_rasterizer, pytorch3d_available

S = 32
CONFIG = LatentFaceConfig(image_size=64)


def _face(b: int = 2, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth albedo and depth with a nose-like bump, asymmetric unless asked."""
    g = torch.Generator().manual_seed(0)
    v, u = torch.meshgrid(torch.linspace(-1, 1, S, dtype=torch.float64), torch.linspace(-1, 1, S, dtype=torch.float64),
                          indexing="ij")
    shift = torch.zeros(b, 1, 1, dtype=torch.float64) if symmetric else 0.3 * torch.rand(b, 1, 1, generator=g) + 0.1
    depth = 1.05 - 0.1 * torch.exp(-((u - shift) ** 2 + v**2) * 4)
    albedo = torch.stack([0.5 + 0.3 * u * (0 if symmetric else 1) + 0.1 * v, 0.5 + 0.2 * u**2, 0.6 - 0.2 * v], 0)
    return albedo.expand(b, 3, S, S).clone(), depth


def _codes(b: int, yaw: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    light = torch.tensor([[0.2, 0.4, 0.3, -0.2]], dtype=torch.float64).expand(b, 4)
    view = pose_code(CONFIG, yaw=yaw, pitch=-8.0, roll=4.0, shift_x=0.01).double().expand(b, 6)
    return light, view


def test_flip_branch_doubles_the_batch_with_mirrored_factors_and_a_shared_mask() -> None:
    albedo, depth = _face()
    light, view = _codes(2)
    out = form_image(albedo, depth, light, view, CONFIG, flip=True)
    assert out.image.shape == (4, 3, S, S) and out.mask.shape == (4, S, S)
    torch.testing.assert_close(out.albedo[2:], albedo.flip(-1))
    torch.testing.assert_close(out.canonical_depth[2:], depth.flip(-1))
    plain = form_image(albedo, depth, light, view, CONFIG)
    flipped = form_image(albedo.flip(-1), depth.flip(-1), light, view, CONFIG)
    torch.testing.assert_close(out.image, torch.cat([plain.image, flipped.image]))
    torch.testing.assert_close(out.shading, torch.cat([plain.shading, flipped.shading]))
    both = plain.mask & flipped.mask
    assert torch.equal(out.mask, torch.cat([both, both]))
    assert not torch.equal(plain.mask, flipped.mask)  # the asymmetric face really has two different masks


def test_symmetric_face_renders_the_same_in_both_branches() -> None:
    albedo, depth = _face(symmetric=True)
    light, view = _codes(2)
    out = form_image(albedo, depth, light, view, CONFIG, flip=True)
    torch.testing.assert_close(out.image[:2], out.image[2:], atol=1e-12, rtol=0)
    torch.testing.assert_close(out.depth[:2], out.depth[2:], atol=1e-12, rtol=0)


def test_flip_branch_is_the_mirror_image_under_the_mirrored_pose() -> None:
    albedo, depth = _face(1)
    light = torch.tensor([[0.2, 0.4, 0.0, -0.2]], dtype=torch.float64)  # light in the mirror plane
    view = pose_code(CONFIG, yaw=12.0, pitch=-6.0, roll=3.0, shift_x=0.005).double()[None]
    mirrored_view = pose_code(CONFIG, yaw=-12.0, pitch=-6.0, roll=-3.0, shift_x=-0.005).double()[None]
    flipped = form_image(albedo, depth, light, view, CONFIG, flip=True)
    mirror = form_image(albedo, depth, light, mirrored_view, CONFIG)
    # Mirroring the face and the pose mirrors the picture, up to the triangulation (grid quads are split along one
    # diagonal, which the mirror swaps) and edge ownership, so compare away from the mask's border.
    inner = torch.nn.functional.avg_pool2d((flipped.mask[1:] & mirror.mask.flip(-1)).double()[:, None], 3, 1, 1)[:, 0]
    inner = inner > 0.99
    assert inner.sum() > 0.7 * S * S
    err = (flipped.image[1:] - mirror.image.flip(-1)).abs().amax(1)[inner]
    assert err.max() < 2e-3
    derr = (flipped.depth[1:] - mirror.depth.flip(-1)).abs()[inner]
    assert derr.max() < 1e-3 and derr.median() < 5e-5


def test_nose_moves_as_documented() -> None:
    """Positive yaw turns the nose to the image's left, positive pitch down (`latentface.render.codes`)."""
    albedo, depth = _face(1, symmetric=True)
    light, _ = _codes(1)

    def nose(view: torch.Tensor) -> tuple[float, float]:
        d = form_image(albedo, depth, light, view.double()[None], CONFIG).depth[0]
        i, j = divmod(int(d.argmin()), S)
        return i - (S - 1) / 2, j - (S - 1) / 2

    assert nose(pose_code(CONFIG))[1] == pytest.approx(0.5, abs=1)
    assert nose(pose_code(CONFIG, yaw=30.0))[1] < -3
    assert nose(pose_code(CONFIG, pitch=20.0))[0] > 2


def test_grid_pulls_the_canonical_image_into_the_view() -> None:
    albedo, depth = _face()
    light, view = _codes(2)
    out = form_image(albedo, depth, light, view, CONFIG)
    warped = torch.nn.functional.grid_sample(out.canonical_image, out.grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(warped, out.image, atol=0, rtol=0)
    assert out.grid.shape == (2, S, S, 2)


def test_canonical_view_only() -> None:
    albedo, depth = _face()
    light, _ = _codes(2)
    out = form_image(albedo, depth, light, None, CONFIG, flip=True)
    assert out.image is None and out.mask is None and out.grid is None and out.albedo.shape[0] == 4
    normal = normals_from_depth(out.canonical_depth, CONFIG.fov).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.canonical_normal, normal)
    torch.testing.assert_close(out.canonical_image, out.albedo * out.shading)


def test_formation_is_differentiable_in_every_input() -> None:
    albedo, depth = _face(1)
    light, view = _codes(1)
    inputs = [x.clone().requires_grad_() for x in (albedo, depth, light, view)]
    out = form_image(*inputs, CONFIG, flip=True)
    (out.image * out.mask[:, None]).sum().backward()
    for x in inputs:
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_model_render_uses_the_shared_formation() -> None:
    model = seeded_model(tiny_config())
    codes = model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        albedo, depth = model.decode(codes)
        expected = form_image(albedo, depth, codes.light, codes.pose, model.config, flip=True)
        out = model.render(codes, flip=True)
        views = model.render_views(codes, model.pose_code(yaw=[-20.0, 0.0, 20.0]))
        single = model.render(codes, view=model.pose_code(yaw=20.0))
    torch.testing.assert_close(out.image, expected.image)
    assert torch.equal(out.mask, expected.mask)
    assert len(views) == 3
    torch.testing.assert_close(views[2].image, single.image)
    with pytest.raises(ValueError, match="views"):
        model.render_views(codes, torch.zeros(6))


def test_renderer_choice_is_checked() -> None:
    model = seeded_model(tiny_config())
    assert model.renderer == "native"
    with pytest.raises(ValueError, match="renderer must be one of"):
        model.renderer = "opengl"
    with pytest.raises(ValueError, match="renderer must be one of"):
        get_rasterizer("nvdiffrast")
    if not pytorch3d_available():
        with pytest.raises(ImportError, match="PyTorch3D"):
            model.renderer = "pytorch3d"
        assert model.renderer == "native"


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    albedo, depth = _face()
    light, view = _codes(2)
    cpu = form_image(albedo, depth, light, view, CONFIG, flip=True)
    cuda = form_image(albedo.cuda(), depth.cuda(), light.cuda(), view.cuda(), CONFIG, flip=True)
    assert torch.equal(cpu.mask, cuda.mask.cpu())
    torch.testing.assert_close(cuda.image.cpu(), cpu.image, atol=1e-9, rtol=0)
    torch.testing.assert_close(cuda.depth.cpu(), cpu.depth, atol=1e-9, rtol=0)

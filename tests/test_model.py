"""The public LatentFace API: encode, disentangle, render, features; determinism and released definitions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import seeded_model, tiny_config

from latentface import Disentangled, FaceCodes, LatentFace, Latents, Rendering, WeightsError
from latentface.render import canonical_depth, normals_from_depth


def test_encode_shapes_and_ranges(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    assert isinstance(codes, FaceCodes) and len(codes) == 4
    assert codes.texture.shape == codes.shape.shape == (4, 32)
    assert codes.light.shape == (4, 4) and codes.pose.shape == (4, 6)
    assert (codes.texture >= 0).all() and (codes.shape >= 0).all()
    assert codes.light.abs().max() <= 1 and codes.pose.abs().max() <= 1


def test_encode_uses_x_times_2_minus_1(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    torch.testing.assert_close(codes.texture, tiny_model.albedo_net.encoder(images * 2 - 1).flatten(1))
    torch.testing.assert_close(codes.pose, tiny_model.view_net(images * 2 - 1))


def test_same_generator_same_result(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    a = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(5))
    b = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(5))
    c = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.identity.texture, b.identity.texture) and torch.equal(a.identity.shape, b.identity.shape)
    assert not torch.equal(a.identity.texture, c.identity.texture)
    f1 = tiny_model.features(images, "fer", generator=torch.Generator().manual_seed(1))
    f2 = tiny_model.features(images, "fer", generator=torch.Generator().manual_seed(1))
    assert torch.equal(f1, f2)


def test_explicit_noise_equals_generator_draw_order(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    gen = torch.Generator().manual_seed(9)
    noise = Latents(texture=torch.randn(4, 32, generator=gen), shape=torch.randn(4, 32, generator=gen))
    by_noise = tiny_model.disentangle(codes, noise=noise)
    by_gen = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(9))
    assert torch.equal(by_noise.identity.texture, by_gen.identity.texture)
    assert torch.equal(by_noise.identity.shape, by_gen.identity.shape)
    with pytest.raises(ValueError, match="noise shapes"):
        tiny_model.disentangle(codes, noise=noise[:2])


def test_identity_plus_expression_is_the_latent(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    parts = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(0))
    assert isinstance(parts, Disentangled)
    torch.testing.assert_close(parts.identity.texture + parts.expression.texture, codes.texture)
    torch.testing.assert_close(parts.identity.shape + parts.expression.shape, codes.shape)
    assert parts.identity.texture.abs().max() <= 1.0  # official sampler ends with clamp(x0, -1, 1)


@pytest.mark.parametrize("steps,sampler", [(1, "official"), (10, "ddim"), (5, "ddim")])
def test_steps_and_sampler_options_change_results(
    tiny_model: LatentFace, images: torch.Tensor, steps: int, sampler: str
) -> None:
    codes = tiny_model.encode(images)
    default = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(0))
    other = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(0), steps=steps, sampler=sampler)
    assert other.identity.texture.shape == default.identity.texture.shape
    assert not torch.allclose(other.identity.texture, default.identity.texture)


def test_fer_features_released_definition(tiny_model: LatentFace, images: torch.Tensor) -> None:
    feats = tiny_model.features(images, "fer", generator=torch.Generator().manual_seed(2))
    assert feats.shape == (4, tiny_model.num_features("fer")) == (4, 128)
    codes = tiny_model.encode(images)
    parts = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(2))
    expected = torch.cat([parts.expression.texture, codes.texture, parts.expression.shape, codes.shape], 1)
    torch.testing.assert_close(feats, expected)


def test_verification_features_released_definition(tiny_model: LatentFace, images: torch.Tensor) -> None:
    feats = tiny_model.features(images, "verification", generator=torch.Generator().manual_seed(3))
    assert feats.shape == (4, tiny_model.num_features("verification")) == (4, 256)
    gen = torch.Generator().manual_seed(3)
    halves = []
    for x in (images, torch.flip(images, dims=[3])):
        codes = tiny_model.encode(x)
        ident = tiny_model.disentangle(codes, generator=gen).identity
        halves.append(torch.cat([ident.texture, codes.texture, ident.shape, codes.shape], 1))
    torch.testing.assert_close(feats, torch.cat(halves, 1))


def test_features_rejects_unknown_protocol(tiny_model: LatentFace, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="protocol"):
        tiny_model.features(images, "age")


def test_stage1_only_model_cannot_disentangle(images: torch.Tensor) -> None:
    model = seeded_model(tiny_config(rdm_width=None))
    with pytest.raises(WeightsError, match="no RDM"):
        model.features(images)
    assert model.encode(images).texture.shape == (4, 32)


def test_render_canonical_maps(tiny_model: LatentFace, images: torch.Tensor) -> None:
    cfg = tiny_model.config
    codes = tiny_model.encode(images)
    out = tiny_model.render(codes)
    assert isinstance(out, Rendering)
    assert out.albedo.shape == out.canonical_image.shape == (4, 3, 64, 64)
    assert out.canonical_depth.shape == (4, 64, 64) and out.shading.shape == (4, 1, 64, 64)
    assert 0 <= out.albedo.min() and out.albedo.max() <= 1
    depth = out.canonical_depth
    assert depth.min() >= cfg.min_depth - 1e-6 and depth.max() <= cfg.max_depth + 1e-6
    for cols in (slice(0, 2), slice(-2, None)):
        torch.testing.assert_close(depth[:, :, cols], torch.full_like(depth[:, :, cols], 1.04))
    # Unit length up to Unsup3D's epsilon in the normalisation (the cross products are ~1e-4 long).
    torch.testing.assert_close(out.canonical_normal.norm(dim=1), torch.ones(4, 64, 64), atol=1e-2, rtol=0)
    torch.testing.assert_close(out.canonical_image, out.albedo * out.shading)
    # Shading = ambient + diffuse * max(0, <n, l>) with ambient = l0/2+0.5, diffuse = l1/2+0.5.
    light = codes.light
    direction = torch.cat([light[:, 2:], torch.ones(4, 1)], 1)
    direction = direction / direction.norm(dim=1, keepdim=True)
    cos = (out.canonical_normal * direction[:, :, None, None]).sum(1).clamp(min=0)
    expected = (light[:, 0, None, None] / 2 + 0.5) + (light[:, 1, None, None] / 2 + 0.5) * cos
    torch.testing.assert_close(out.shading[:, 0], expected)


def test_render_is_differentiable(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    latent = codes.texture.detach().requires_grad_()
    depth_latent = codes.shape.detach().requires_grad_()
    out = tiny_model.render(FaceCodes(texture=latent, shape=depth_latent, light=codes.light, pose=codes.pose))
    out.canonical_image.mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert depth_latent.grad is not None and depth_latent.grad.abs().sum() > 0


def test_canonical_depth_normalisation() -> None:
    raw = torch.zeros(1, 8, 8)
    raw[0, :, 4:] = 100.0
    d = canonical_depth(raw, 0.9, 1.1, 1.04, 2)
    torch.testing.assert_close(d[0, :, 2:4], torch.full((8, 2), 0.9), atol=1e-6, rtol=0)  # tanh(-50) = -1
    torch.testing.assert_close(d[0, :, 4:6], torch.full((8, 2), 1.1), atol=1e-6, rtol=0)
    assert torch.all(d[0, :, :2] == 1.04) and torch.all(d[0, :, -2:] == 1.04)


def test_normals_of_planes() -> None:
    flat = normals_from_depth(torch.full((1, 16, 16), 1.0, dtype=torch.float64), fov=10.0)
    # Exact up to Unsup3D's 1e-7 in the normalisation, relative to cross products of length ~3e-5.
    torch.testing.assert_close(
        flat, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, 16, 16, 3), atol=1e-2, rtol=0
    )
    assert torch.all(flat[..., :2] == 0)
    # A plane z = 1 + 0.5 x in camera space has normal ~ (-0.5, 0, 1) (up to the orientation convention).
    s = 32
    f = (s - 1) / 2 / torch.tan(torch.deg2rad(torch.tensor(5.0)))
    u = torch.arange(s, dtype=torch.float64) - (s - 1) / 2
    depth = (1.0 / (1 - 0.5 * u / f)).expand(s, s)[None]  # ray-plane intersection of column u
    n = normals_from_depth(depth, fov=10.0)[0, 1:-1, 1:-1]
    n = n / n.norm(dim=-1, keepdim=True)
    expected = torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64)
    expected = expected / expected.norm()
    torch.testing.assert_close(n, expected.expand_as(n), atol=1e-6, rtol=0)
    border = normals_from_depth(depth, fov=10.0)[0, 0]
    torch.testing.assert_close(
        border, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(border), atol=1e-6, rtol=0
    )


def test_result_containers_index_cat_and_move(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    parts = tiny_model.disentangle(codes, generator=torch.Generator().manual_seed(0))
    joined = FaceCodes.cat([codes[:2], codes[2:]])
    assert torch.equal(joined.texture, codes.texture) and torch.equal(joined.pose, codes.pose)
    assert len(parts[1]) == 1 and torch.equal(parts[-1].identity.shape, parts.identity.shape[3:])
    assert torch.equal(Disentangled.cat([parts[:1], parts[1:]]).expression.texture, parts.expression.texture)
    moved = codes.to(torch.float64).cpu().detach()
    assert moved.texture.dtype == torch.float64


def test_render_posed_views(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    canonical = tiny_model.render(codes, view=None)
    assert canonical.image is None and canonical.mask is None
    frontal = tiny_model.render(codes, view="frontal")
    inside = frontal.mask
    assert inside.float().mean() > 0.9  # the zero pose sees the whole canonical face but its last row/column
    torch.testing.assert_close(
        frontal.image.permute(0, 2, 3, 1)[inside],
        frontal.canonical_image.permute(0, 2, 3, 1)[inside],
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(frontal.depth[inside], frontal.canonical_depth[inside], atol=1e-5, rtol=0)
    same = tiny_model.render(codes, view=torch.zeros(6))
    assert torch.equal(same.image, frontal.image)
    posed = tiny_model.render(codes)  # the pose in the codes
    assert posed.image.shape == (4, 3, 64, 64) and posed.normal.shape == (4, 3, 64, 64)
    assert posed.mask.dtype == torch.bool
    assert not torch.equal(posed.depth, frontal.depth)
    with pytest.raises(ValueError, match="view must"):
        tiny_model.render(codes, view="profile")
    with pytest.raises(ValueError, match="view must have shape"):
        tiny_model.render(codes, view=torch.zeros(3))


def test_relighting(tiny_model: LatentFace, images: torch.Tensor) -> None:
    codes = tiny_model.encode(images)
    # Full ambient, no diffuse: shading is exactly 1 and the canonical image is the albedo.
    flat = tiny_model.render(codes, view=None, light=torch.tensor([1.0, -1.0, 0.0, 0.0]))
    torch.testing.assert_close(flat.shading, torch.ones_like(flat.shading))
    torch.testing.assert_close(flat.canonical_image, flat.albedo)
    # Light from the camera, no ambient: shading is the normal's z component.
    head_on = tiny_model.render(codes, view=None, light=torch.tensor([-1.0, 1.0, 0.0, 0.0]).expand(4, 4))
    torch.testing.assert_close(head_on.shading[:, 0], head_on.canonical_normal[:, 2].clamp(min=0))
    default = tiny_model.render(codes, view=None)
    assert torch.equal(default.shading, tiny_model.render(codes, view=None, light=codes.light).shading)
    with pytest.raises(ValueError, match="light must have shape"):
        tiny_model.render(codes, light=torch.zeros(3))


FORMER_NAMES = [(FaceCodes, "albedo", "texture"), (FaceCodes, "depth", "shape"), (FaceCodes, "view", "pose"),
                (Latents, "albedo", "texture"), (Latents, "depth", "shape")]


@pytest.mark.parametrize(("cls", "old", "new"), FORMER_NAMES, ids=[f"{c.__name__}.{o}" for c, o, _ in FORMER_NAMES])
def test_former_code_names_work_with_a_deprecation_warning(tiny_model, images, cls, old: str, new: str) -> None:
    codes = tiny_model.encode(images)
    obj = codes if cls is FaceCodes else Latents(codes.texture, codes.shape)
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}\.{old} is deprecated .*: use {cls.__name__}\.{new}"):
        assert getattr(obj, old) is getattr(obj, new)
    kwargs = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    kwargs[old] = kwargs.pop(new)
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}\.{old} is deprecated"):
        rebuilt = cls(**kwargs)
    assert all(torch.equal(getattr(rebuilt, f.name), getattr(obj, f.name)) for f in dataclasses.fields(obj))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda z: FaceCodes(texture=z, albedo=z, shape=z, light=z, pose=z), "both 'texture' and its former name"),
        (lambda z: Latents(texture=z, shape=z, view=z), "unexpected keyword argument 'view'"),
        (lambda z: FaceCodes(texture=z, shape=z), "missing arguments: light, pose"),
    ],
)
def test_code_containers_check_their_arguments(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=match):
        make(torch.zeros(1, 2))


@pytest.mark.filterwarnings("error:.*is deprecated and will be removed:DeprecationWarning")
def test_the_package_itself_uses_the_current_names(tiny_model, images) -> None:
    codes = tiny_model.encode(images)
    generator = torch.Generator().manual_seed(0)
    tiny_model.disentangle(codes, generator=generator)
    tiny_model.render(codes, flip=True)
    tiny_model.render_views(codes, tiny_model.pose_code(yaw=[0, 20]))
    for protocol in ("fer", "verification"):
        tiny_model.features(images, protocol, generator=generator)
    FaceCodes.cat([codes[:2], codes[2:]]).to(torch.float64)


def test_device_and_dtype_are_those_of_every_parameter() -> None:
    model = seeded_model(tiny_config())
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    model.depth_rdm.to(torch.float64)  # one network cast on its own: the model has no single dtype
    with pytest.raises(RuntimeError, match=r"several dtypes \(torch.float32, torch.float64\).*model.to\(dtype\)"):
        _ = model.dtype
    model.to(torch.float64)
    assert model.dtype == torch.float64
    model.light_net.to("meta")  # one network elsewhere: the model has no single device
    with pytest.raises(RuntimeError, match=r"several devices \(cpu, meta\).*model.to\(device\)"):
        _ = model.device

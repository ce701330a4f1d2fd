"""Display conversions, image grids, animations and turntables (`latentface.visualize`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import seeded_model, tiny_config
from PIL import Image, ImageSequence

from latentface.render.shading import normals_from_depth
from latentface.visualize import (
    ANIMATION_FORMATS,
    depth_to_rgb,
    make_grid,
    normal_to_rgb,
    save_animation,
    save_grid,
    save_turntable,
    shading_to_rgb,
    turntable,
)


def ramp_frames(f: int = 5, h: int = 24, w: int = 32) -> torch.Tensor:
    """(F, 3, H, W) smooth, distinct frames: colour ramps shifted per frame."""
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    return torch.stack([torch.stack([(x + k / f) % 1, y, torch.full_like(x, k / max(f - 1, 1))]) for k in range(f)])


def read_frames(path) -> tuple[list[np.ndarray], dict]:
    """RGB frames as float arrays in [0, 1] and the info of the first frame."""
    with Image.open(path) as im:
        info = dict(im.info)
        frames = [np.asarray(frame.convert("RGB"), dtype=np.float64) / 255 for frame in ImageSequence.Iterator(im)]
        info["n_frames"] = im.n_frames
        info["size"] = im.size
        info["format"] = im.format
    return frames, info


# --- display conversions ---


def test_depth_nearer_is_brighter_and_masked_is_black() -> None:
    depth = torch.tensor([[[1.0, 2.0], [3.0, 100.0]]])
    mask = torch.tensor([[[True, True], [True, False]]])
    rgb = depth_to_rgb(depth, mask)
    assert rgb.shape == (1, 3, 2, 2)
    assert torch.equal(rgb[0, 0], rgb[0, 1]) and torch.equal(rgb[0, 0], rgb[0, 2])  # grayscale
    # normalised over the masked pixels only: 1 -> white, 3 -> black, the masked 100 -> black
    torch.testing.assert_close(rgb[0, 0], torch.tensor([[1.0, 0.5], [0.0, 0.0]]))


def test_depth_explicit_range_clamps() -> None:
    rgb = depth_to_rgb(torch.tensor([[[0.5, 1.0, 1.5, 3.0]]]), lo=1.0, hi=2.0)
    torch.testing.assert_close(rgb[0, 0, 0], torch.tensor([1.0, 1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="hi must be larger"):
        depth_to_rgb(torch.ones(1, 2, 2), lo=2.0, hi=1.0)


@pytest.mark.parametrize("with_mask", [False, True])
def test_depth_constant_or_empty_mask_is_finite(with_mask: bool) -> None:
    depth = torch.full((2, 4, 4), 1.2)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool) if with_mask else None
    rgb = depth_to_rgb(depth, mask)
    assert torch.isfinite(rgb).all()
    assert torch.all(rgb == (0.0 if with_mask else 1.0))  # empty mask: all black; constant depth: white


def dome_normals(size: int = 33) -> torch.Tensor:
    """(1, 3, H, W) normals of a bump that comes towards the camera at the image centre."""
    v, u = torch.meshgrid(torch.arange(size) - size // 2, torch.arange(size) - size // 2, indexing="ij")
    depth = 1.0 - 0.1 * torch.exp(-(u**2 + v**2).double() / 60)
    return normals_from_depth(depth[None], 10.0).permute(0, 3, 1, 2).float()


def test_normal_flat_plane_is_blue() -> None:
    normal = normals_from_depth(torch.ones(2, 8, 8), 10.0).permute(0, 3, 1, 2)
    rgb = normal_to_rgb(normal)
    assert rgb.shape == (2, 3, 8, 8)
    torch.testing.assert_close(rgb, torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1).expand_as(rgb), atol=1e-4, rtol=0)


def test_normal_directions_and_mask() -> None:
    rgb = normal_to_rgb(dome_normals())
    c = 16
    assert rgb[0, 0, c, c + 8] > 0.75  # right side of the bump faces right: red
    assert rgb[0, 0, c, c - 8] < 0.25
    assert rgb[0, 1, c - 8, c] > 0.75  # top side faces up: green
    assert rgb[0, 1, c + 8, c] < 0.25
    mask = torch.zeros(1, 33, 33, dtype=torch.bool)
    mask[:, :, :10] = True
    masked = normal_to_rgb(dome_normals(), mask)
    assert torch.equal(masked[..., :10], rgb[..., :10]) and torch.all(masked[..., 10:] == 0)


def test_shading_to_rgb_clamps_and_repeats() -> None:
    rgb = shading_to_rgb(torch.tensor([[[[-0.5, 0.25, 1.7]]]]))
    assert rgb.shape == (1, 3, 1, 3)
    torch.testing.assert_close(rgb, torch.tensor([0.0, 0.25, 1.0]).expand(1, 3, 1, 3))


def test_shading_to_rgb_fit_scales_only_images_over_one() -> None:
    shading = torch.tensor([[[[0.2, 0.8]]], [[[0.5, 2.0]]]])
    rgb = shading_to_rgb(shading, fit=True)
    torch.testing.assert_close(rgb[0, :, 0], torch.tensor([0.2, 0.8]).expand(3, 2))  # within [0, 1]: unchanged
    torch.testing.assert_close(rgb[1, :, 0], torch.tensor([0.25, 1.0]).expand(3, 2))  # divided by its maximum


@pytest.mark.parametrize(
    ("fn", "bad"),
    [
        (depth_to_rgb, torch.ones(1, 1, 4, 4)),
        (normal_to_rgb, torch.ones(1, 4, 4)),
        (shading_to_rgb, torch.ones(1, 3, 4, 4)),
    ],
)
def test_conversions_reject_bad_shapes(fn, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="must have shape"):
        fn(bad)


# --- grids ---


@pytest.mark.parametrize(
    ("n", "nrow", "padding", "rows", "cols"),
    [(6, 4, 2, 2, 4), (8, 4, 0, 2, 4), (3, 8, 2, 1, 3), (1, 8, 5, 1, 1), (7, 3, 1, 3, 3)],
)
def test_grid_layout(n: int, nrow: int, padding: int, rows: int, cols: int) -> None:
    h, w = 5, 7
    images = torch.zeros(n, 3, h, w)
    for k in range(n):
        images[k, :, 1, 2] = (k + 1) / 16  # a marker pixel per image
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)
    assert grid.shape == (3, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for k in range(n):
        top, left = padding + (k // cols) * (h + padding), padding + (k % cols) * (w + padding)
        assert torch.all(grid[:, top + 1, left + 2] == (k + 1) / 16)
        assert torch.all(grid[:, top, left] == 0)
    if padding:
        assert torch.all(grid[:, :padding] == 1) and torch.all(grid[:, :, -padding:] == 1)
    if n < rows * cols:  # empty cells of the last row are padding
        assert torch.all(grid[:, -padding - h:, -padding - w:] == 1)


def test_grid_list_gray_and_clamp() -> None:
    gray = torch.full((2, 1, 4, 4), 0.25)
    single = torch.full((3, 4, 4), 2.0)  # clamped to 1
    grid = make_grid([gray, single, torch.full((1, 3, 4, 4), -1.0)], nrow=4, padding=1, pad_value=0.5)
    assert grid.shape == (3, 6, 21)
    assert torch.all(grid[:, 1:5, 1:5] == 0.25) and torch.all(grid[:, 1:5, 6:10] == 0.25)
    assert torch.all(grid[:, 1:5, 11:15] == 1.0) and torch.all(grid[:, 1:5, 16:20] == 0.0)
    assert torch.all(grid[:, 0] == 0.5)


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(0, 3, 4, 4), [], torch.zeros(2, 2, 4, 4), [torch.zeros(3, 4, 4), torch.zeros(3, 5, 4)]],
)
def test_grid_rejects_bad_input(bad) -> None:
    with pytest.raises(ValueError):
        make_grid(bad)


def test_save_grid_round_trip(tmp_path) -> None:
    images = torch.rand(5, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=3, padding=2)
    assert path == tmp_path / "sub" / "grid.png"
    expected = make_grid(images, nrow=3, padding=2).permute(1, 2, 0).numpy()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (expected.shape[1], expected.shape[0])
        pixels = np.asarray(im, dtype=np.float64) / 255
    assert np.abs(pixels - expected).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match=r"\.png"):
        save_grid(images, tmp_path / "grid.jpg")


# --- animations ---


@pytest.mark.parametrize("suffix", list(ANIMATION_FORMATS))
def test_save_animation_round_trip(tmp_path, suffix: str) -> None:
    frames = (ramp_frames() * 5).round() / 5  # at most 6 * 6 * 5 colours: even the GIF palette is exact
    path = save_animation(frames, tmp_path / "out" / f"anim{suffix}", fps=10, loop=0)
    decoded, info = read_frames(path)
    assert info["format"] == ANIMATION_FORMATS[suffix]
    assert info["n_frames"] == len(frames) == len(decoded)
    assert info["size"] == (32, 24)
    assert info["loop"] == 0
    with Image.open(path) as im:
        im.seek(1)
        im.load()
        assert im.info["duration"] == 100
    # every frame matches, so nothing smears from one frame into the next
    for frame, expected in zip(decoded, frames.permute(0, 2, 3, 1).numpy(), strict=True):
        np.testing.assert_allclose(frame, expected, atol=0.5 / 255 + 1e-6)


def test_save_animation_gif_palette_many_colours(tmp_path) -> None:
    frames = ramp_frames()  # ~3700 colours for 256 palette entries
    decoded, info = read_frames(save_animation(frames, tmp_path / "anim.gif"))
    assert info["n_frames"] == len(frames)
    for frame, expected in zip(decoded, frames.permute(0, 2, 3, 1).numpy(), strict=True):
        error = np.abs(frame - expected)
        assert error.max() < 0.2 and error.mean() < 0.08


@pytest.mark.parametrize("suffix", list(ANIMATION_FORMATS))
def test_save_animation_merges_repeated_frames(tmp_path, suffix: str) -> None:
    f = ramp_frames(3)
    path = save_animation(torch.stack([f[0], f[1], f[1], f[2]]), tmp_path / f"anim{suffix}", fps=10)
    with Image.open(path) as im:
        durations = []
        for frame in ImageSequence.Iterator(im):
            frame.load()
            durations.append(frame.info["duration"])
    assert durations == [100, 200, 100]  # same playing time


@pytest.mark.parametrize("loop", [0, 3])
def test_save_animation_loop_and_gray(tmp_path, loop: int) -> None:
    frames = ramp_frames()[:, :1]  # (F, 1, H, W)
    path = save_animation(frames, tmp_path / "gray.png", fps=12, loop=loop)
    decoded, info = read_frames(path)
    assert info["loop"] == loop and len(decoded) == len(frames)
    np.testing.assert_allclose(decoded[2][..., 1], frames[2, 0].numpy(), atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("name", ["anim.mp4", "anim", "anim.jpg"])
def test_save_animation_bad_suffix(tmp_path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.gif, \.webp, \.png"):
        save_animation(ramp_frames(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fps", "loop"), [(0, 0), (-1, 0), (math.inf, 0), (10, -1)])
def test_save_animation_bad_timing(tmp_path, fps: float, loop: int) -> None:
    with pytest.raises(ValueError):
        save_animation(ramp_frames(), tmp_path / "a.gif", fps=fps, loop=loop)


@pytest.mark.parametrize("suffix", list(ANIMATION_FORMATS))
def test_save_animation_is_atomic_and_overwrites(tmp_path, suffix: str) -> None:
    path = tmp_path / f"anim{suffix}"
    save_animation(ramp_frames(3), path)
    save_animation(ramp_frames(4), path)
    assert read_frames(path)[1]["n_frames"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary files left


# --- turntables ---


@pytest.fixture(scope="module")
def model():
    return seeded_model(tiny_config(image_size=64, ae_width=16, light_pose_width=8, latent_dim=16), seed=3)


@pytest.fixture(scope="module")
def codes(model):
    return model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("pitch", [0.0, 10.0])
def test_turntable_frame0_is_the_frontal_yaw_render(model, codes, pitch: float) -> None:
    video = turntable(model, codes, frames=4, max_yaw=30.0, pitch=pitch)
    assert video.shape == (2, 4, 3, 64, 64)
    assert not video.requires_grad and video.min() >= 0 and video.max() <= 1
    with torch.no_grad():
        ref = model.render(codes, view=model.pose_code(yaw=0.0, pitch=pitch))
    mask = ref.mask[:, None].expand(-1, 3, -1, -1)
    assert mask.any() and not mask.all()
    torch.testing.assert_close(video[:, 0][mask], ref.image.clamp(0, 1)[mask])
    assert torch.all(video[:, 0][~mask] == 1.0)  # white background
    # frames 1 and 3 are the +30 and -30 degree views
    assert (video[:, 1] - video[:, 0]).abs().max() > 0.1 and (video[:, 3] - video[:, 1]).abs().max() > 0.1


def test_turntable_zero_yaw_background_and_light(model, codes) -> None:
    light = model.light_code(ambient=0.8, diffuse=0.2)
    video = turntable(model, codes[:1], frames=3, max_yaw=0.0, light=light, background=(0.0, 0.5, 1.0))
    assert torch.equal(video[:, 1], video[:, 0]) and torch.equal(video[:, 2], video[:, 0])
    with torch.no_grad():
        ref = model.render(codes[:1], view=model.pose_code(), light=light)
    outside = ~ref.mask[0]
    assert outside.any()
    background = torch.tensor([0.0, 0.5, 1.0])[:, None].expand(3, int(outside.sum()))
    torch.testing.assert_close(video[0, 0][:, outside], background)
    with pytest.raises(ValueError, match="frames"):
        turntable(model, codes, frames=0)


def test_save_turntable(tmp_path, model, codes) -> None:
    path = save_turntable(model, codes[1:], tmp_path / "turn.gif", frames=8, max_yaw=40.0, fps=12)
    decoded, info = read_frames(path)
    assert info["format"] == "GIF" and info["n_frames"] == 8 and info["size"] == (64, 64)
    expected = turntable(model, codes[1:], frames=8, max_yaw=40.0)[0, 0].permute(1, 2, 0).numpy()
    assert np.abs(decoded[0] - expected).mean() < 0.02
    with pytest.raises(ValueError, match="one face"):
        save_turntable(model, codes, tmp_path / "two.gif")
    with pytest.raises(ValueError, match="suffix"):
        save_turntable(model, codes[:1], tmp_path / "turn.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turn.gif"]

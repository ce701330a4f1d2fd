"""Input handling: every accepted kind of image, conversions, resizing, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentface import InvalidImageError, LatentFace
from latentface.preprocess import resize_square, to_batch


def _rgb(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_all_input_kinds_agree(tmp_path: Path) -> None:
    arr = _rgb()
    path = tmp_path / "face.png"
    Image.fromarray(arr).save(path)
    expected = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    for item in (arr, Image.fromarray(arr), path, str(path), expected, expected[None],
                 (expected * 255).round().to(torch.uint8), arr.astype(np.float32) / 255, arr.astype(np.uint16) * 257):
        batch = to_batch(item, 64)
        assert batch.shape == (1, 3, 64, 64) and batch.dtype == torch.float32
        torch.testing.assert_close(batch[0], expected, atol=1e-6, rtol=0)


def test_lists_and_batches_are_concatenated() -> None:
    batch = to_batch([torch.rand(2, 3, 64, 64), _rgb(), Image.fromarray(_rgb(seed=1))], 64)
    assert batch.shape == (4, 3, 64, 64)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I"])
def test_pil_modes_become_rgb(mode: str) -> None:
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    if mode == "I;16":
        im = Image.fromarray(ramp)
    elif mode == "I":
        im = Image.fromarray(ramp.astype(np.int32))
    else:
        im = Image.fromarray(_rgb()).convert(mode)
    assert im.mode == mode
    batch = to_batch(im, 64)
    assert batch.shape == (1, 3, 64, 64) and 0 <= batch.min() and batch.max() <= 1
    if mode in ("L", "I;16", "I"):
        assert torch.equal(batch[0, 0], batch[0, 1])
    if mode in ("I;16", "I"):
        assert batch.max() > 0.9  # 16-bit data scaled by 65535, not clipped at 255


def test_grayscale_and_rgba_arrays() -> None:
    gray = _rgb()[:, :, 0]
    assert torch.equal(to_batch(gray, 64)[0, 2], torch.from_numpy(gray).float() / 255)
    rgba = np.concatenate([_rgb(), np.zeros((64, 64, 1), np.uint8)], axis=2)
    torch.testing.assert_close(to_batch(rgba, 64), to_batch(rgba[:, :, :3], 64))


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    batch = to_batch(path, 64, resize_mode="center_crop")
    # After rotation the image is portrait with the white half on top.
    assert batch[0, :, :16].mean() > 0.9 and batch[0, :, -16:].mean() < 0.1


def test_resize_modes() -> None:
    wide = torch.zeros(3, 64, 128)
    wide[:, :, 32:96] = 1.0  # a centred white square
    assert resize_square(wide, 64, resize_mode="center_crop").min() > 0.99
    stretched = resize_square(wide, 64, resize_mode="stretch")
    assert stretched.shape == (3, 64, 64) and stretched[:, :, :8].max() < 0.01 and stretched[:, :, 24:40].min() > 0.99
    big = torch.rand(3, 256, 256)
    torch.testing.assert_close(resize_square(big, 64).mean(), big.mean(), atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((64, 64, 2), np.uint8), "shape"),
        (np.zeros((2, 64, 64, 3), np.uint8), "shape"),
        (np.zeros((64, 64, 3), np.int64), "dtype"),
        (np.full((64, 64, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (torch.full((3, 64, 64), float("inf")), "NaN or Inf"),
        (torch.rand(3, 64, 64) * 2 - 1, r"\[0, 1\]"),
        (torch.zeros(3, 64, 64, dtype=torch.int32), "dtype"),
        (torch.zeros(64, 64), "shape"),
        (torch.zeros(1, 2, 64, 64), "channels"),
        (42, "unsupported type"),
        ([], "empty"),
    ],
)
def test_bad_input_is_a_clear_typed_error(bad: object, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        to_batch(bad, 64)  # type: ignore[arg-type]


def test_error_names_the_bad_item(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(InvalidImageError, match=r"input 1 \('.*broken\.jpg'\): cannot read image"):
        to_batch([_rgb(), broken], 64)
    with pytest.raises(InvalidImageError, match="missing.png"):
        to_batch(tmp_path / "missing.png", 64)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(_rgb()).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(InvalidImageError, match="truncated.png"):
        to_batch(truncated, 64)


def test_model_resizes_to_its_size(tiny_model: LatentFace) -> None:
    codes = tiny_model.encode([_rgb(100, 100), _rgb(48, 64)])
    assert codes.texture.shape == (2, 32)

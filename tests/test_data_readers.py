"""Training-data readers on fixture folders generated here: image folders, CelebA (prepared crops and crop list),
VoxCeleb1 face tracks, clip folders, and the skip/raise policy for broken files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from latentface.data.clips import ClipFolder, VoxCelebTracks
from latentface.data.files import natural_key
from latentface.data.image_datasets import CelebA, CropBox, ImageFolder, read_crop_list
from latentface.errors import InvalidImageError
from latentface.preprocess import resize_square


def _pixels(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _gray(path: Path, level: int, size: int = 12) -> Path:
    """A flat gray image: its level tells which file a decoded frame came from."""
    return _save(path, np.full((size, size, 3), level, np.uint8))


def _truncated(path: Path) -> None:
    _save(path.with_suffix(".tmp.jpg"), _pixels(32, 32, 9))
    data = path.with_suffix(".tmp.jpg").read_bytes()
    path.with_suffix(".tmp.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])


BROKEN: dict[str, Callable[[Path], None]] = {
    "truncated_jpeg": _truncated,
    "not_an_image": lambda p: p.write_bytes(b"this is text, not an image"),
    "zero_bytes": lambda p: p.write_bytes(b""),
}


def _frame_levels(frames: torch.Tensor) -> list[int]:
    return [round(float(f.mean()) * 255 / 10) for f in frames]


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize("size", [8, 20])
@pytest.mark.parametrize("resize_mode", ["stretch", "center_crop"])
def test_image_folder_lists_recursively_in_natural_order(tmp_path: Path, size: int, resize_mode: str) -> None:
    names = ["img10.png", "img2.JPG", "sub/a.jpeg", "sub/deeper/b.BMP", "c.webp"]
    arrays = {name: _pixels(12, 18, i) for i, name in enumerate(names)}
    for name, pixels in arrays.items():
        _save(tmp_path / name, pixels)
    (tmp_path / "notes.txt").write_text("not listed")
    (tmp_path / ".hidden.jpg").write_bytes(b"not listed")
    ds = ImageFolder(tmp_path, size, resize_mode=resize_mode)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == [
        "c.webp", "img2.JPG", "img10.png", "sub/a.jpeg", "sub/deeper/b.BMP"]
    for index in range(len(ds)):
        item = ds[index]
        assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
        assert 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["index"] == index and item["path"] == str(ds.paths[index]) and item["skipped"] == ""
    exact = torch.from_numpy(arrays["img10.png"]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(ds[2]["image"], resize_square(exact, size, resize_mode=resize_mode))


def test_natural_order() -> None:
    names = ["frame10.jpg", "frame2.jpg", "Frame1.jpg", "frame002.jpg", "a.jpg"]
    assert sorted(names, key=natural_key) == ["a.jpg", "Frame1.jpg", "frame002.jpg", "frame2.jpg", "frame10.jpg"]


@pytest.mark.parametrize("kind", [*BROKEN, "missing"])
def test_broken_files_are_skipped_or_raise(tmp_path: Path, kind: str) -> None:
    for i in range(3):
        _save(tmp_path / f"{i}.png", _pixels(10, 10, i))
    skip, strict = ImageFolder(tmp_path, 8), ImageFolder(tmp_path, 8, on_error="raise")
    bad = tmp_path / "1.png"
    if kind == "missing":
        bad.unlink()
    else:
        BROKEN[kind](bad)
    assert len(skip) == 3
    item = skip[1]
    assert item["index"] == 2 and item["path"] == str(tmp_path / "2.png")
    assert item["skipped"].split("\t")[0] == str(bad)
    torch.testing.assert_close(item["image"], skip[2]["image"])
    assert [path for path, _ in skip.skipped] == [str(bad)]
    skip[1]
    assert len(skip.skipped) == 1, "a file is recorded once"
    with pytest.raises(InvalidImageError, match=str(bad)):
        strict[1]


def test_skip_wraps_around_and_all_broken_fails(tmp_path: Path) -> None:
    _save(tmp_path / "0.png", _pixels(10, 10, 0))
    BROKEN["zero_bytes"](tmp_path / "1.png")
    ds = ImageFolder(tmp_path, 8)
    assert ds[1]["index"] == 0 and ds[-1]["index"] == 0
    BROKEN["not_an_image"](tmp_path / "0.png")
    with pytest.raises(InvalidImageError, match="every one of the 2 items"):
        ds[0]


def test_skips_travel_through_worker_processes(tmp_path: Path) -> None:
    for i in range(6):
        _save(tmp_path / f"{i}.jpg", _pixels(16, 16, i))
    for i, kind in zip((1, 4), BROKEN, strict=False):
        BROKEN[kind](tmp_path / f"{i}.jpg")
    ds = ImageFolder(tmp_path, 8)
    batches = list(DataLoader(ds, batch_size=3, num_workers=2))
    assert [int(i) for b in batches for i in b["index"]] == [0, 2, 2, 3, 5, 5]
    reported = [line.split("\t")[0] for b in batches for s in b["skipped"] for line in s.splitlines()]
    assert reported == [str(tmp_path / "1.jpg"), str(tmp_path / "4.jpg")]
    assert ds.skipped == [], "workers read copies: the main process's list stays empty"


@pytest.mark.parametrize("make", ["missing", "file", "empty", "no_images"])
def test_bad_image_root_fails_at_construction(tmp_path: Path, make: str) -> None:
    root = tmp_path / "root"
    if make == "file":
        root.write_text("x")
    elif make in ("empty", "no_images"):
        root.mkdir()
        if make == "no_images":
            (root / "readme.txt").write_text("x")
    error = FileNotFoundError if make in ("missing", "file") else ValueError
    with pytest.raises(error, match="expected a folder with image files"):
        ImageFolder(root)


@pytest.mark.parametrize("setting", [{"image_size": 0}, {"resize_mode": "pad"}, {"resample": "nearest"},
                                     {"on_error": "ignore"}])
def test_bad_settings_fail_at_construction(tmp_path: Path, setting: dict) -> None:
    _save(tmp_path / "a.png", _pixels(4, 4, 0))
    with pytest.raises(ValueError, match=next(iter(setting))):
        ImageFolder(tmp_path, **setting)


# ---------------------------------------------------------------- CelebA


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_celeba_prepared_folder(tmp_path: Path, split: str) -> None:
    counts = {"train": 3, "val": 2, "test": 1}
    for name, count in counts.items():
        for i in range(count):
            _save(tmp_path / name / f"{i + 1:06d}.jpg", _pixels(128, 128, i))
    ds = CelebA(tmp_path, split, image_size=64)
    assert len(ds) == counts[split]
    image = ds[0]["image"]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1


def test_celeba_prepared_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"celeba_crop\.py"):
        CelebA(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"\{train,val,test\}"):
        CelebA(tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        CelebA(tmp_path, "validation")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no train images"):
        CelebA(tmp_path)


BOXES = [CropBox("in.png", 0, 3, 2, 8, 8), CropBox("edge.png", 0, -3, 15, 8, 8), CropBox("out.png", 0, 25, -6, 8, 8)]


def _crop_list(path: Path, boxes: list[CropBox]) -> Path:
    lines = ["# name split x0 y0 width height", ""]
    lines += [f"{b.name} {b.split} {b.x0} {b.y0} {b.width} {b.height}" for b in boxes]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("box", BOXES, ids=[b.name for b in BOXES])
def test_celeba_crop_list_crops_the_box(tmp_path: Path, box: CropBox) -> None:
    pixels = _pixels(20, 30, 1)
    _save(tmp_path / "img_celeba" / box.name, pixels)
    crop_list = _crop_list(tmp_path / "bbox.txt", [box, CropBox("v.png", 1, 0, 0, 4, 4)])
    ds = CelebA(tmp_path / "img_celeba", image_size=8, crop_list=crop_list, prepared_size=None)
    assert len(ds) == 1
    # Unsup3D: replicate-pad by (h, w) on each side, then take the box shifted by the padding
    padded = np.pad(pixels, ((box.height, box.height), (box.width, box.width), (0, 0)), mode="edge")
    expected = padded[box.y0 + box.height: box.y0 + 2 * box.height, box.x0 + box.width: box.x0 + 2 * box.width]
    torch.testing.assert_close(ds[0]["image"], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_celeba_crop_list_resizes_through_the_prepared_size(tmp_path: Path) -> None:
    pixels = _pixels(40, 40, 2)
    _save(tmp_path / "000001.jpg", pixels)
    crop_list = _crop_list(tmp_path / "bbox.txt", [CropBox("000001.jpg", 2, 5, 5, 30, 30)])
    image = CelebA(tmp_path, "test", image_size=16, crop_list=crop_list)[0]["image"]
    assert image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1


def test_celeba_crop_list_missing_images(tmp_path: Path) -> None:
    boxes = [CropBox(f"{i}.png", 0, 0, 0, 4, 4) for i in range(3)]
    crop_list = _crop_list(tmp_path / "bbox.txt", boxes)
    root = tmp_path / "img_celeba"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=r"0\.png.*img_celeba folder"):
        CelebA(root, crop_list=crop_list)
    _save(root / "0.png", _pixels(6, 6, 0))
    _save(root / "2.png", _pixels(6, 6, 2))
    ds = CelebA(root, image_size=4, crop_list=crop_list)
    assert ds[1]["index"] == 2 and ds.skipped[0][0] == str(root / "1.png")
    with pytest.raises(ValueError, match="no val images"):
        CelebA(root, "val", crop_list=crop_list)


@pytest.mark.parametrize("line", ["a.jpg 0 1 2 3", "a.jpg 3 0 0 4 4", "a.jpg 0 0 0 0 4", "a.jpg 0 x 0 4 4"])
def test_bad_crop_list_lines_are_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bbox.txt"
    path.write_text(f"good.jpg 0 0 0 4 4\n{line}\n")
    with pytest.raises(ValueError, match=r"bbox\.txt:2: bad crop-list line"):
        read_crop_list(path)


# ---------------------------------------------------------------- VoxCeleb1 face tracks


def _voxceleb(root: Path, recrop: bool = False) -> None:
    """id_b has a 20-frame video, id_a a 16-frame and a 5-frame one; id_c lacks the 1.6 folder."""
    for identity, video, count in (("id_b", "vid1", 20), ("id_a", "vid2", 16), ("id_a", "short", 5)):
        for i in range(count):
            _gray(root / identity / "1.6" / video / f"{i + 1:07d}.jpg", 10 * i)
            if recrop and not (identity == "id_a" and i >= 8):
                _gray(root / identity / "1.6" / video / f"{i + 1:07d}_recrop.png", 10 * i)
    _gray(root / "id_c" / "other" / "vid" / "0000001.jpg", 0)


def test_voxceleb_layout_identities_and_short_videos(tmp_path: Path) -> None:
    _voxceleb(tmp_path)
    ds = VoxCelebTracks(tmp_path, clip_length=16, image_size=8)
    assert [c.name for c in ds.clips] == ["id_a/1.6/vid2", "id_b/1.6/vid1"]
    assert ds.identities == ["id_a", "id_b"] and [c.identity for c in ds.clips] == [0, 1]
    assert ds.dropped == ["id_a/1.6/short"]
    item = ds[1]
    assert item["frames"].shape == (16, 3, 8, 8) and item["frames"].dtype == torch.float32
    assert item["identity"] == 1 and item["video"] == "id_b/1.6/vid1" and item["index"] == 1
    assert _frame_levels(item["frames"]) == item["frame_indices"].tolist()
    assert item["start"] == item["frame_indices"][0]


@pytest.mark.parametrize("recrop", [None, "recrop"])
def test_voxceleb_recrop_filter(tmp_path: Path, recrop: str | None) -> None:
    _voxceleb(tmp_path, recrop=True)
    ds = VoxCelebTracks(tmp_path, clip_length=8, image_size=8, recrop=recrop)
    frames = {c.name: c.frames for c in ds.clips}
    if recrop is None:
        assert len(frames["id_b/1.6/vid1"]) == 40 and len(frames["id_a/1.6/vid2"]) == 24
    else:
        assert len(frames["id_b/1.6/vid1"]) == 20 and len(frames["id_a/1.6/vid2"]) == 8
        assert all(f.name.endswith("_recrop.png") for fs in frames.values() for f in fs)
        assert ds.dropped == ["id_a/1.6/short"]
        with pytest.raises(ValueError, match="all 3 videos have fewer than clip_length=21"):
            VoxCelebTracks(tmp_path, clip_length=21, recrop=recrop)


@pytest.mark.parametrize("make", ["missing", "flat_frames", "no_version_folder"])
def test_voxceleb_wrong_layout(tmp_path: Path, make: str) -> None:
    if make == "flat_frames":
        _gray(tmp_path / "id_a" / "vid" / "0000001.jpg", 0)
    elif make == "no_version_folder":
        _gray(tmp_path / "id_a" / "1.5" / "vid" / "0000001.jpg", 0)
    root = tmp_path / "nowhere" if make == "missing" else tmp_path
    error = FileNotFoundError if make == "missing" else ValueError
    with pytest.raises(error, match=r"<identity>/1\.6/<video>/<frame>\.jpg"):
        VoxCelebTracks(root)


@pytest.mark.parametrize("sampling", ["random", "consecutive"])
def test_clip_sampling_is_deterministic_per_seed_epoch_and_index(tmp_path: Path, sampling: str) -> None:
    _voxceleb(tmp_path)
    ds = VoxCelebTracks(tmp_path, clip_length=4, image_size=8, sampling=sampling, seed=3)
    again = VoxCelebTracks(tmp_path, clip_length=4, image_size=8, sampling=sampling, seed=3)
    draws = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        again.set_epoch(epoch)
        indices = ds[0]["frame_indices"]
        assert torch.equal(indices, again[0]["frame_indices"])
        assert (indices[1:] >= indices[:-1]).all() and 0 <= indices.min() and indices.max() < 16
        if sampling == "consecutive":
            assert torch.equal(indices, torch.arange(4) + ds[0]["start"])
        draws.append(indices.tolist())
    assert len({tuple(d) for d in draws}) > 1, "the epoch changes the clips"
    with pytest.raises(ValueError, match="sampling"):
        VoxCelebTracks(tmp_path, sampling="strided")


# ---------------------------------------------------------------- clip folders


@pytest.mark.parametrize("nested", [False, True])
def test_clip_folder_layouts_and_natural_frame_order(tmp_path: Path, nested: bool) -> None:
    clips = {"g1/c1": 12, "g1/c2": 12, "g2/c1": 12, "g2/tiny": 2} if nested else {"c1": 12, "c2": 12, "tiny": 2}
    for clip, count in clips.items():
        for i in range(count):
            _gray(tmp_path / clip / f"frame{i}.png", 10 * i)
    ds = ClipFolder(tmp_path, clip_length=12, image_size=6, sampling="consecutive")
    assert ds.nested is nested
    assert ds.dropped == (["g2/tiny"] if nested else ["tiny"])
    assert [f.name for f in ds.clips[0].frames][:4] == ["frame0.png", "frame1.png", "frame2.png", "frame3.png"]
    assert [f.name for f in ds.clips[0].frames][-2:] == ["frame10.png", "frame11.png"]
    identities = [ds[i]["identity"] for i in range(len(ds))]
    assert identities == ([0, 0, 1] if nested else [0, 1])
    item = ds[0]
    assert item["frames"].shape == (12, 3, 6, 6) and item["start"] == 0
    assert _frame_levels(item["frames"]) == list(range(12)), "frame2 comes before frame10"
    assert ClipFolder(tmp_path, clip_length=12, nested=nested).nested is nested


def test_clip_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="one folder per clip"):
        ClipFolder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no video folders"):
        ClipFolder(tmp_path)
    _gray(tmp_path / "clip" / "1.png", 0)
    with pytest.raises(ValueError, match="fewer than clip_length=16"):
        ClipFolder(tmp_path)
    _gray(tmp_path / "group" / "clip" / "1.png", 0)
    with pytest.raises(ValueError, match="pass nested=True or nested=False"):
        ClipFolder(tmp_path, clip_length=1)


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_frame_skips_the_clip_or_raises(tmp_path: Path, kind: str) -> None:
    for clip in ("a", "b", "c"):
        for i in range(4):
            _gray(tmp_path / clip / f"{i}.jpg", 10 * i)
    bad = tmp_path / "b" / "2.jpg"
    BROKEN[kind](bad)
    ds = ClipFolder(tmp_path, clip_length=4, sampling="consecutive")
    item = ds[1]
    assert item["index"] == 2 and item["video"] == "c" and item["skipped"].startswith(f"{bad}\t")
    assert ds.skipped[0][0] == str(bad)
    with pytest.raises(InvalidImageError, match=str(bad)):
        ClipFolder(tmp_path, clip_length=4, sampling="consecutive", on_error="raise")[1]

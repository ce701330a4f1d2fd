"""Face preprocessing: crop geometry (no detector), robust image conversion, and MTCNN detection on SynthFaces
renders pasted into larger canvases (skipped without facenet-pytorch)."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from latentface import InvalidImageError
from latentface.data.synthfaces import SynthConfig, SynthFacesImages
from latentface.preprocess import (
    MIN_IMAGE_SIDE,
    celeba_crop_box,
    crop_image,
    read_image,
    to_batch,
    to_rgb8,
    unsup3d_crop_box,
)

pytestmark = pytest.mark.usefixtures("one_thread")

if TYPE_CHECKING:
    from latentface.preprocess.faces import FaceDetector

Faces = list[tuple[Image.Image, tuple[int, int, int, int]]]
BoxRule = Callable[[tuple[float, float, float, float]], tuple[int, int, int, int]]

HAS_MTCNN = importlib.util.find_spec("facenet_pytorch") is not None
needs_mtcnn = pytest.mark.skipif(not HAS_MTCNN, reason="facenet-pytorch not installed (extra 'face')")

BACKGROUND = (90, 110, 130)

# --- crop geometry, worked by hand -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        # w 40, h 50: c = floor(90/4 * 1.1) = floor(24.75) = 24; centre (30, 45); top = floor(45 + 3.6) - 24 = 24
        ((10, 20, 50, 70), (6, 24, 48, 48)),
        # w 20, h 30: c = floor(12.5 * 1.1) = 13; centre (10.5, 15.5): left = 10 - 13, top = floor(17.45) - 13
        ((0.5, 0.5, 20.5, 30.5), (-3, 4, 26, 26)),
        # a box past the top-left corner: c = floor(10 * 1.1) = 11; centre (-2, 0); top = floor(1.65) - 11
        ((-12, -10, 8, 10), (-13, -10, 22, 22)),
    ],
)
def test_unsup3d_crop_box_by_hand(box: tuple[float, ...], expected: tuple[int, ...]) -> None:
    assert unsup3d_crop_box(box) == expected


@pytest.mark.parametrize(
    ("box", "kwargs", "expected"),
    [
        ((10, 20, 50, 70), {}, (8, 23, 45, 45)),  # side 45, centre (30, 45): corner (7.5, 22.5) rounds half up
        # side 1.1 * 45 = 49.5 -> 50; centre y 45 + 0.15 * 24.75 = 48.7125; corner (5, floor(24.2125))
        ((10, 20, 50, 70), {"scale": 1.1, "shift": 0.15}, (5, 24, 50, 50)),
        ((-5.0, 0.0, 5.0, 4.0), {}, (-3, -1, 7, 7)),  # side 7, centre (0, 2): corner (-3.5, -1.5) rounds half up
    ],
)
def test_celeba_crop_box_by_hand(box: tuple[float, ...], kwargs: dict[str, float], expected: tuple[int, ...]) -> None:
    assert celeba_crop_box(box, **kwargs) == expected


@pytest.mark.parametrize("rule", [unsup3d_crop_box, celeba_crop_box])
@pytest.mark.parametrize("box", [(10, 10, 10, 20), (10, 10, 20, 5), (0, 0, math.nan, 5), (0, 0, 1)])
def test_malformed_boxes_are_refused(rule: BoxRule, box: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="box"):
        rule(box)


def test_too_small_for_an_unsup3d_crop() -> None:
    with pytest.raises(ValueError, match="too small"):
        unsup3d_crop_box((0, 0, 1.5, 1.5))  # half side floor(0.825) = 0
    assert celeba_crop_box((0, 0, 1.5, 1.5)) == (0, 0, 2, 2)


def _demo_crop(pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The Unsup3D demo's procedure, written out: pad every side by the half side c with edge pixels, then slice
    the 2c square whose top-left corner (in padded pixels) is (int(cx), int(cy + 0.15 c))."""
    x0, y0, x1, y1 = box
    c = int(((y1 - y0) + (x1 - x0)) / 4 * 1.1)
    padded = np.pad(pixels, ((c, c), (c, c), (0, 0)), mode="edge")
    top, left = int((y0 + y1) / 2 + 0.15 * c), int((x0 + x1) / 2)
    return padded[top : top + 2 * c, left : left + 2 * c]


def test_unsup3d_crop_matches_the_demo_procedure() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    compared = 0
    for _ in range(200):
        x0, y0 = rng.uniform(-10, 60), rng.uniform(-10, 44)
        box = (x0, y0, x0 + rng.uniform(4, 40), y0 + rng.uniform(4, 40))
        c = int(((box[3] - box[1]) + (box[2] - box[0])) / 4 * 1.1)
        if (box[0] + box[2]) / 2 < 0 or (box[1] + box[3]) / 2 + 0.15 * c < 0:
            continue  # a negative padded index: the demo's int() truncates towards 0 (ours floors, module docstring)
        expected = _demo_crop(pixels, box)
        if expected.shape[0] != expected.shape[1]:
            continue  # the demo's slice ran past its padding: it is not square there (ours is, module docstring)
        got = np.asarray(crop_image(image, unsup3d_crop_box(box)))
        assert np.array_equal(got, expected), box
        compared += 1
    assert compared > 100


def test_crop_replicates_borders_by_hand() -> None:
    pixels = np.arange(9, dtype=np.uint8).reshape(3, 3, 1).repeat(3, axis=2) * 10  # rows 0 10 20 / 30 40 50 / ...
    image = Image.fromarray(pixels)
    got = np.asarray(crop_image(image, (-1, -1, 3, 4)))[:, :, 0]
    assert got.tolist() == [[0, 0, 10], [0, 0, 10], [30, 30, 40], [60, 60, 70]]
    outside = np.asarray(crop_image(image, (10, 10, 2, 2)))[:, :, 0]
    assert outside.tolist() == [[80, 80], [80, 80]]  # wholly outside: the nearest pixel, the corner
    assert crop_image(image, (0, 0, 3, 3), size=6).size == (6, 6)


@pytest.mark.parametrize("box", [(0, 0, 0, 5), (0, 0, 5, -1), (0.0, 0, 5, 5), (0, 0, 5)])
def test_crop_image_refuses_bad_boxes(box: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="crop box"):
        crop_image(Image.new("RGB", (8, 8)), box)  # type: ignore[arg-type]


# --- robust conversion ---------------------------------------------------------------------------------------


def _ramp16() -> Image.Image:
    return Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16))  # 0 .. 65472


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I;16", "I"])
def test_to_rgb8_converts_every_mode(mode: str) -> None:
    source = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    image = _ramp16() if mode == "I;16" else (
        Image.fromarray(np.asarray(_ramp16()).astype(np.int32)) if mode == "I" else source.convert(mode)
    )
    assert image.mode == mode
    rgb = to_rgb8(image)
    assert rgb.mode == "RGB" and rgb.size == (32, 32)
    arr = np.asarray(rgb)
    if mode in ("I;16", "I"):
        # scaled from 16 bits, not clipped at 255 as PIL's convert("RGB") does
        expected = np.round(np.asarray(image).astype(np.float64) / 65535 * 255)
        assert np.abs(arr[:, :, 0] - expected).max() <= 1 and np.array_equal(arr[:, :, 0], arr[:, :, 2])
        assert np.asarray(image.convert("RGB")).mean() > arr.mean() + 50
    else:  # 8-bit modes: PIL's own conversion
        assert np.array_equal(arr, np.asarray(image.convert("RGB")))


def test_pil_input_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white; shown rotated 90 degrees clockwise: top half white
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "r.jpg") as opened:  # not through read_image: the tag is still there
        batch = to_batch(opened, 64, resize_mode="center_crop")
    assert batch[0, :, :16].mean() > 0.9 and batch[0, :, -16:].mean() < 0.1


def test_tiny_images_are_refused_on_request() -> None:
    tiny = np.zeros((10, 40, 3), np.uint8)
    assert to_batch(tiny, 64).shape == (1, 3, 64, 64)  # the default only refuses empty images
    message = rf"input 0 .*40x10 pixels, smaller than the minimum of {MIN_IMAGE_SIDE}"
    with pytest.raises(InvalidImageError, match=message):
        to_batch(tiny, 64, min_side=MIN_IMAGE_SIDE)


def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over twice the limit
    with pytest.raises(InvalidImageError, match="bomb.png.*decompression bomb.*MAX_IMAGE_PIXELS"):
        read_image(path)
    with pytest.raises(InvalidImageError, match=r"input 0 \('.*bomb.png'\).*decompression bomb"):
        to_batch(path, 64)


# --- detection -------------------------------------------------------------------------------------------------


def test_missing_facenet_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from latentface.preprocess import FaceDetector

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # makes its import fail
    with pytest.raises(ImportError, match=r'pip install "latentface\[face\]"'):
        FaceDetector()


@pytest.fixture(scope="module")
def faces() -> Faces:
    """Two 128 px SynthFaces renders (near-frontal) and the bounding box (x0, y0, x1, y1) of their face masks."""
    data = SynthFacesImages(2, split="test", seed=0, config=SynthConfig(size=128, max_yaw=15, max_pitch=10))
    out = []
    for item in data.batch([0, 1]).items():
        image = Image.fromarray((item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        rows, cols = np.nonzero(item["face_mask"].reshape(128, 128).numpy())
        out.append((image, (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)))
    return out


def _canvas(size: tuple[int, int], pastes: list[tuple[Image.Image, tuple[int, int]]]) -> Image.Image:
    canvas = Image.new("RGB", size, BACKGROUND)
    for image, corner in pastes:
        canvas.paste(image, corner)
    return canvas


def _placed(box: tuple[int, int, int, int], corner: tuple[int, int], scale: float = 1.0) -> tuple[float, ...]:
    return tuple(v * scale + corner[i % 2] for i, v in enumerate(box))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


@pytest.fixture(scope="module")
def detector_all() -> FaceDetector:
    from latentface.preprocess import FaceDetector

    return FaceDetector(select="all")


@needs_mtcnn
@pytest.mark.parametrize(("crop", "crop_rule"), [("unsup3d", unsup3d_crop_box), ("celeba", celeba_crop_box)])
def test_detects_a_face_at_its_place(faces: Faces, crop: str, crop_rule: BoxRule) -> None:
    from latentface.preprocess import FaceCrop, FaceDetector

    image, mask_box = faces[0]
    corner = (100, 40)
    canvas = _canvas((256, 192), [(image, corner)])
    found = FaceDetector(crop=crop).detect(canvas)
    assert len(found) == 1 and isinstance(found[0], FaceCrop)
    face = found[0]
    assert _iou(face.box, _placed(mask_box, corner)) > 0.6 and face.confidence >= 0.9
    assert face.crop_box == crop_rule(face.box)
    assert face.image.mode == "RGB" and face.image.size == face.crop_box[2:] and face.image.width == face.image.height
    assert np.array_equal(np.asarray(face.image), np.asarray(crop_image(canvas, face.crop_box)))


@needs_mtcnn
def test_a_face_past_the_border_is_cropped_with_replication(faces: Faces) -> None:
    from latentface.preprocess import FaceDetector

    image, _ = faces[0]
    canvas = _canvas((200, 200), [(image, (-10, 90))])  # the chin reaches the bottom edge
    (face,) = FaceDetector().detect(canvas)
    x, y, w, h = face.crop_box
    assert y + h > 200
    crop = np.asarray(face.image)
    last = 200 - 1 - y  # the crop row of the image's last row
    assert (crop[last + 1 :] == crop[last]).all()


@needs_mtcnn
def test_no_face_gives_an_empty_list(detector_all: FaceDetector) -> None:
    ramp = np.linspace(0, 255, 160 * 120).reshape(120, 160).astype(np.uint8)
    assert detector_all.detect(Image.fromarray(ramp).convert("RGB")) == []


@needs_mtcnn
def test_select_largest_or_all_and_min_face_size(faces: Faces, detector_all: FaceDetector) -> None:
    from latentface.preprocess import FaceDetector

    (big, big_box), (small, small_box) = faces
    corners = [(10, 40), (200, 20)]
    canvas = _canvas((320, 200), [(big, corners[0]), (small.resize((80, 80)), corners[1])])
    every = detector_all.detect(canvas)
    assert len(every) == 2
    assert _iou(every[0].box, _placed(big_box, corners[0])) > 0.6
    assert _iou(every[1].box, _placed(small_box, corners[1], 80 / 128)) > 0.5
    (largest,) = FaceDetector(select="largest").detect(canvas)
    assert largest.box == every[0].box and largest.crop_box == every[0].crop_box
    sides = [((f.box[2] - f.box[0]) + (f.box[3] - f.box[1])) / 2 for f in every]
    between = round((sides[0] + sides[1]) / 2)
    (kept,) = FaceDetector(select="all", min_face_size=between).detect(canvas)  # its image pyramid differs
    assert _iou(kept.box, every[0].box) > 0.9


def _convert(canvas: Image.Image, mode: str) -> Image.Image:
    if mode == "P":
        return canvas.quantize(64)
    if mode == "I;16":
        return Image.fromarray(np.asarray(canvas.convert("L")).astype(np.uint16) * 257)
    return canvas.convert(mode)


@needs_mtcnn
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_any_image_mode_is_detected(faces: Faces, detector_all: FaceDetector, mode: str) -> None:
    image, mask_box = faces[0]
    corner = (60, 30)
    canvas = _convert(_canvas((224, 192), [(image, corner)]), mode)
    assert canvas.mode == mode
    (face,) = detector_all.detect(canvas)
    assert _iou(face.box, _placed(mask_box, corner)) > 0.6 and face.image.mode == "RGB"


@needs_mtcnn
def test_exif_rotated_input_is_detected_upright(faces: Faces, detector_all: FaceDetector, tmp_path: Path) -> None:
    image, mask_box = faces[0]
    corner = (30, 70)
    upright = _canvas((192, 256), [(image, corner)])
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back on display
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "rotated.jpg") as opened:
        (face,) = detector_all.detect(opened)
    assert _iou(face.box, _placed(mask_box, corner)) > 0.6 and face.image.size == face.crop_box[2:]


@needs_mtcnn
def test_huge_images_are_detected_at_the_working_size(faces: Faces, monkeypatch: pytest.MonkeyPatch) -> None:
    from latentface.preprocess import FaceDetector

    image, mask_box = faces[0]
    scale, corner = 8, (1200, 800)
    huge = _canvas((4096, 3072), [(image.resize((128 * scale, 128 * scale), Image.Resampling.BILINEAR), corner)])
    detector = FaceDetector()
    detector.max_side = 256
    seen: list[tuple[int, int]] = []
    detect = detector._mtcnn.detect
    monkeypatch.setattr(detector._mtcnn, "detect", lambda images: seen.extend(i.size for i in images) or detect(images))
    (face,) = detector.detect(huge)
    assert seen == [(256, 192)]
    assert _iou(face.box, _placed(mask_box, corner, scale)) > 0.6
    assert face.image.size == face.crop_box[2:] and face.image.width > 500  # cut from the full-resolution image


@needs_mtcnn
def test_detect_batch_equals_detect(faces: Faces, detector_all: FaceDetector) -> None:
    image, _ = faces[0]
    canvases = [_canvas((192, 160), [(image, (20, 10))]), _canvas((224, 160), [(image, (80, 20))]),
                _canvas((192, 160), [(faces[1][0], (50, 30))]), Image.new("RGB", (192, 160), BACKGROUND)]
    batched = detector_all.detect_batch(canvases)
    for canvas, got in zip(canvases, batched, strict=True):
        alone = detector_all.detect(canvas)
        assert [f.crop_box for f in got] == [f.crop_box for f in alone]
        for a, b in zip(got, alone, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
    assert [len(found) for found in batched] == [1, 1, 1, 0]


@needs_mtcnn
@pytest.mark.parametrize(
    ("bad", "match"), [(Image.new("RGB", (12, 40)), "12x40 pixels"), (np.zeros((64, 64, 3), np.uint8), "PIL image")]
)
def test_detector_refuses_bad_input(detector_all: FaceDetector, bad: object, match: str) -> None:
    with pytest.raises(InvalidImageError, match=rf"image 0: .*{match}"):
        detector_all.detect(bad)  # type: ignore[arg-type]


@needs_mtcnn
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"crop": "tight"}, "crop"), ({"select": "first"}, "select"), ({"min_confidence": 1.5}, "min_confidence"),
     ({"min_face_size": 0}, "min_face_size")],
)
def test_detector_refuses_bad_settings(kwargs: dict[str, object], match: str) -> None:
    from latentface.preprocess import FaceDetector

    with pytest.raises(ValueError, match=match):
        FaceDetector(**kwargs)  # type: ignore[arg-type]


def test_a_box_over_a_16_bit_image_loads_as_the_whole_image(tmp_path) -> None:
    from latentface.data.records import ImageRecord, load_record

    pixels = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)  # a 16-bit grayscale PNG (mode I;16)
    assert Image.open(path).mode.startswith("I")
    whole = load_record(ImageRecord(path), 16)
    boxed = load_record(ImageRecord(path, box=(0, 0, 32, 32)), 16)
    assert whole.max() > 0.5 and torch.allclose(boxed, whole, atol=1 / 255)

"""`latentface reconstruct` and `latentface.reconstruct`: sheets, meshes, turntables, re-runs, names, exit codes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentface import LatentFace
from latentface.cli import EXIT_ERROR, EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, main
from latentface.inputs import expand_inputs
from latentface.reconstruct import (
    COLUMNS,
    LABEL_HEIGHT,
    RELIGHT_AMBIENT,
    RELIGHT_DIFFUSE,
    RELIGHTS,
    ROW_LABEL_MARGIN,
    labelled_grid,
    output_files,
    reconstruction_panels,
    reconstruction_sheet,
    row_label_width,
    unique_names,
    write_reconstructions,
)
from latentface.render.codes import decode_light
from latentface.render.shading import normals_from_depth, shade

SAMPLES = sorted((Path(__file__).parents[1] / "examples" / "faces").glob("*.png"))
FRAMES = 4  # yaws 0, +max, 0, -max: no two neighbours equal, so the GIF keeps every frame


@pytest.fixture(scope="module")
def model() -> LatentFace:
    return LatentFace.from_pretrained("synthfaces-tiny")


def sheet_size(size: int, rows: int, scale: int, padding: int = 2) -> tuple[int, int]:
    """(width, height) of a sheet as `labelled_grid` documents it."""
    side = size * scale
    return len(COLUMNS) * (side + padding) + padding, LABEL_HEIGHT + rows * (side + padding) + padding


def frame_count(path: Path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def statuses(out: Path) -> dict[str, str]:
    summary = json.loads((out / "reconstruct.json").read_text())
    return {Path(r["input"]).name: r["status"] for r in summary["inputs"]}


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A sample face, a grayscale face, a truncated PNG and a text file named like an image."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES[0], folder)
    with Image.open(SAMPLES[2]) as im:
        im.convert("L").save(folder / "gray.png")
    (folder / "truncated.png").write_bytes(SAMPLES[3].read_bytes()[:120])
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_cli_end_to_end_and_rerun(inputs, tmp_path, model, capsys) -> None:
    out = tmp_path / "out"
    argv = ["reconstruct", str(inputs), "-o", str(out), "--frames", str(FRAMES), "--batch-size", "2"]
    assert main(argv) == EXIT_ERROR  # two bad inputs skipped, the rest done
    captured = capsys.readouterr()
    assert "truncated.png" in captured.err and "notes.jpg" in captured.err and "Traceback" not in captured.err
    good = [SAMPLES[0].stem, "gray"]
    assert statuses(out) == {**{f"{n}.png": "done" for n in good}, "truncated.png": "error", "notes.jpg": "error"}

    trimesh = pytest.importorskip("trimesh")
    size = model.config.image_size
    for name in good:
        with Image.open(out / f"{name}.png") as sheet:
            assert sheet.format == "PNG" and sheet.mode == "RGB"
            assert sheet.size == sheet_size(size, 1, math.ceil(128 / size))
        mesh = trimesh.load(out / f"{name}.obj", force="mesh", process=False)
        assert len(mesh.vertices) == size * size and len(mesh.faces) == 2 * (size - 1) ** 2
        assert "map_Kd " + f"{name}.albedo.png" in (out / f"{name}.mtl").read_text()
        with Image.open(out / f"{name}.albedo.png") as texture:
            assert texture.size == (size, size)
        with Image.open(out / f"{name}.gif") as gif:
            assert gif.format == "GIF" and gif.size == (size, size)
        assert frame_count(out / f"{name}.gif") == FRAMES
    written = {p: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "reconstruct.json"}
    assert len(written) == 5 * len(good)

    assert main(argv) == EXIT_ERROR  # re-run: nothing redone, the bad inputs still reported
    assert "0 faces" in capsys.readouterr().out
    assert statuses(out) == {**{f"{n}.png": "up-to-date" for n in good}, "truncated.png": "error",
                             "notes.jpg": "error"}
    assert {p: p.stat().st_mtime_ns for p in written} == written

    (out / f"{good[0]}.gif").unlink()  # an incomplete face is redone, the others are not
    assert main(argv) == EXIT_ERROR
    assert statuses(out)[f"{good[0]}.png"] == "done" and statuses(out)[f"{good[1]}.png"] == "up-to-date"
    assert main([*argv, "--overwrite"]) == EXIT_ERROR
    assert all(statuses(out)[f"{n}.png"] == "done" for n in good)


def test_sheet_panels_hold_the_input(model) -> None:
    images = [SAMPLES[0], SAMPLES[1]]
    sheets = reconstruction_sheet(model, images, scale=3, padding=4)
    batch = model.preprocess(images)
    size = model.config.image_size
    for sheet, image in zip(sheets, batch, strict=True):
        assert sheet.size == sheet_size(size, 1, 3, padding=4)
        panel = np.asarray(sheet)[LABEL_HEIGHT + 4 : LABEL_HEIGHT + 4 + 3 * size, 4 : 4 + 3 * size]
        expected = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(panel, expected.repeat(3, axis=0).repeat(3, axis=1))
        labels = np.asarray(sheet)[:LABEL_HEIGHT]
        assert (labels < 128).any() and (labels == 255).mean() > 0.5  # dark text on the white strip


def test_panels_equal_the_model_renderings(model) -> None:
    """The panels reuse one decode and one warp; they must equal `LatentFace.render`'s images."""
    batch = model.preprocess(SAMPLES[:3])
    panels = reconstruction_panels(model, batch, background=0.5)
    with torch.no_grad():
        view, frontal = model.render(model.encode(batch)), model.render(model.encode(batch), view="frontal")
        relit = [model.render(model.encode(batch), light=model.light_code(ambient=RELIGHT_AMBIENT,
                                                                          diffuse=RELIGHT_DIFFUSE, direction=d))
                 for _, d in RELIGHTS]
    expected = [batch, view.albedo.clamp(0, 1)] + [
        torch.where(r.mask[:, None], r.image.clamp(0, 1), 0.5) for r in (view, frontal, *relit)]
    got = [panels[:, COLUMNS.index(c)] for c in ("input", "albedo", "reconstruction", "frontal")]
    got += [panels[:, COLUMNS.index(label)] for label, _ in RELIGHTS]
    assert panels.shape == (3, len(COLUMNS), 3, *batch.shape[2:])
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("rows", "scale", "padding"), [(1, 1, 0), (3, 2, 2), (2, 1, 5)])
def test_labelled_grid_layout(rows: int, scale: int, padding: int) -> None:
    panels = torch.rand(rows, len(COLUMNS), 3, 8, 8, generator=torch.Generator().manual_seed(0))
    picture = labelled_grid(panels, COLUMNS, scale=scale, padding=padding)
    assert picture.size == sheet_size(8, rows, scale, padding)
    r, c, side = rows - 1, len(COLUMNS) - 1, 8 * scale
    top, left = LABEL_HEIGHT + padding + r * (side + padding), padding + c * (side + padding)
    got = np.asarray(picture)[top : top + side : scale, left : left + side : scale]
    np.testing.assert_array_equal(got, (panels[r, c].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="labels"):
        labelled_grid(panels, COLUMNS[:-1])


def test_labelled_grid_row_labels_shift_the_panels_right() -> None:
    panels = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    row_labels = ["first row", "a longer second row"]
    plain = labelled_grid(panels, ["a", "b", "c"], scale=16)
    picture = labelled_grid(panels, ["a", "b", "c"], row_labels=row_labels, scale=16)
    strip = row_label_width(row_labels)
    assert strip > row_label_width(row_labels[:1]) > 2 * ROW_LABEL_MARGIN
    assert picture.size == (plain.width + strip, plain.height)
    pixels = np.asarray(picture)
    np.testing.assert_array_equal(pixels[:, strip:], np.asarray(plain))  # the same sheet, moved right
    for r in range(2):
        top = LABEL_HEIGHT + 2 + r * (128 + 2)
        assert (pixels[top:top + 128, :strip].sum(axis=2) < 300).any()  # dark text beside each row
    with pytest.raises(ValueError, match="row labels"):
        labelled_grid(panels, ["a", "b", "c"], row_labels=row_labels[:1])


@pytest.mark.parametrize("label", [label for label, _ in RELIGHTS])
def test_relight_labels_match_the_lit_side(model, label: str) -> None:
    """On a convex bump (nearer in the middle) the side named by the label is the brighter one."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    depth = 1.0 - 0.1 * (1 - xs**2 - ys**2).clamp(min=0)
    direction = dict(RELIGHTS)[label]
    code = model.light_code(ambient=0.0, diffuse=1.0, direction=direction)[None]
    ambient, diffuse, unit = decode_light(code, model.config)
    shading = shade(normals_from_depth(depth[None], model.config.fov), ambient, diffuse, unit)[0, 0]
    halves = {"left": (shading[:, :16], shading[:, 16:]), "right": (shading[:, 16:], shading[:, :16]),
              "top": (shading[:16], shading[16:])}
    lit, unlit = halves[label.split()[-1]]
    assert lit.mean() > unlit.mean() + 0.1


@pytest.mark.parametrize(
    ("paths", "names"),
    [
        (["a/x.jpg", "b/x.jpg"], ["x", "x-2"]),
        (["a/x.jpg", "x-2.png", "b/x.png"], ["x", "x-2", "x-3"]),
        (["X.png", "x.jpg"], ["X", "x-2"]),  # case-insensitive file systems
        (["x.png", "x.albedo.jpg"], ["x", "x.albedo-2"]),  # x's texture is x.albedo.png
        (["x.turntable.png", "x.png"], ["x.turntable", "x-2"]),  # x's APNG would be x.turntable.png
    ],
)
def test_unique_names(paths: list[str], names: list[str]) -> None:
    got = unique_names(paths)
    assert got == names
    files = [{f.casefold() for a in ("gif", "webp", "apng") for f in output_files(n, animation=a)} for n in got]
    assert len(set().union(*files)) == sum(len(f) for f in files)  # no file name shared by two inputs


def test_colliding_stems_get_their_own_outputs(tmp_path, model) -> None:
    for folder, sample in (("a", SAMPLES[0]), ("b", SAMPLES[4])):
        (tmp_path / folder).mkdir()
        shutil.copy(sample, tmp_path / folder / "x.png")
    out = tmp_path / "out"
    result = write_reconstructions(model, [tmp_path / "a", tmp_path / "b"], out, animation=None, mesh=False)
    assert [(r.name, r.status) for r in result.records] == [("x", "done"), ("x-2", "done")]
    with Image.open(out / "x.png") as first, Image.open(out / "x-2.png") as second:
        assert not np.array_equal(np.asarray(first), np.asarray(second))


@pytest.mark.parametrize(("fmt", "suffix"), [("webp", ".webp"), ("apng", ".turntable.png"), ("none", None)])
def test_formats_and_no_mesh(tmp_path, fmt: str, suffix: str | None) -> None:
    out = tmp_path / "out"
    argv = ["reconstruct", str(SAMPLES[0]), "-o", str(out), "--frames", str(FRAMES), "--no-mesh",
            "--animation-format", fmt]
    assert main(argv) == EXIT_OK
    stem = SAMPLES[0].stem
    expected = {f"{stem}.png", "reconstruct.json"} | ({stem + suffix} if suffix else set())
    assert {p.name for p in out.iterdir()} == expected
    if suffix:
        assert frame_count(out / (stem + suffix)) == FRAMES


def test_write_error_is_per_face(tmp_path, model) -> None:
    out = tmp_path / "out"
    (out / f"{SAMPLES[0].stem}.obj").mkdir(parents=True)  # the mesh cannot be written over a folder
    result = write_reconstructions(model, SAMPLES[:2], out, animation=None)
    assert [r.status for r in result.records] == ["error", "done"]
    assert "cannot write outputs" in result.records[0].error and result.records[0].outputs == []


@dataclass
class FakeCrop:
    image: Image.Image
    box: tuple[float, float, float, float]
    crop_box: tuple[int, int, int, int]
    confidence: float


def _fake_face(image: Image.Image, x: int, confidence: float) -> FakeCrop:
    return FakeCrop(image.crop((x, 0, x + 48, 48)), (x + 2.5, 1.5, x + 45.5, 47.5), (x, 0, 48, 48), confidence)


class FakeDetector:
    """Finds a face in the top-left 48 x 48 square and, with ``select="all"``, one in the 48 x 48 square at x = 64 of
    images at least 112 px wide; none in images whose top-left pixel is pure white."""

    def __init__(self, device: str | None = None, crop: str = "unsup3d", select: str = "largest") -> None:
        assert crop == "unsup3d"
        self.select = select

    def detect(self, image: Image.Image) -> list[FakeCrop]:
        assert image.mode == "RGB"
        if image.getpixel((0, 0)) == (255, 255, 255):
            return []
        faces = [_fake_face(image, 0, 0.99)]
        if self.select == "all" and image.width >= 112:
            faces.append(_fake_face(image, 64, 0.93))
        return faces


def _fake_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("latentface.preprocess.faces")
    fake.FaceDetector = FakeDetector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "latentface.preprocess.faces", fake)


def _input_panel(sheet_path: Path, size: int) -> np.ndarray:
    """The input column of the first row of a sheet, at the model's resolution."""
    scale = math.ceil(128 / size)
    with Image.open(sheet_path) as sheet:
        top = LABEL_HEIGHT + 2
        return np.asarray(sheet)[top : top + size * scale : scale, 2 : 2 + size * scale : scale]


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_detect_crops_to_the_face(tmp_path, monkeypatch, model) -> None:
    _fake_detection(monkeypatch)
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "blank.png")
    out = tmp_path / "out"
    argv = ["reconstruct", str(SAMPLES[0]), str(tmp_path / "blank.png"), "-o", str(out), "--detect", "--no-mesh",
            "--animation-format", "none"]
    assert main(argv) == EXIT_ERROR
    summary = json.loads((out / "reconstruct.json").read_text())
    assert [r["error"] for r in summary["inputs"]] == [None, "no face found"]
    assert summary["inputs"][0]["face"] == {"box": [2.5, 1.5, 45.5, 47.5], "crop_box": [0, 0, 48, 48],
                                            "confidence": 0.99}
    with Image.open(SAMPLES[0]) as im:
        crop = model.preprocess(im.convert("RGB").crop((0, 0, 48, 48)))[0]
    panel = _input_panel(out / f"{SAMPLES[0].stem}.png", model.config.image_size)
    np.testing.assert_array_equal(panel, _as_uint8(crop))


def test_all_faces_get_a_record_and_files_each(tmp_path, monkeypatch, model) -> None:
    _fake_detection(monkeypatch)
    pair = Image.new("RGB", (128, 64))
    for x, sample in ((0, SAMPLES[0]), (64, SAMPLES[1])):
        with Image.open(sample) as im:
            pair.paste(im.convert("RGB").resize((64, 64)), (x, 0))
    pair.save(tmp_path / "pair.png")
    with Image.open(SAMPLES[2]) as im:
        im.convert("RGB").resize((64, 64)).save(tmp_path / "single.png")  # too narrow for a second fake face
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path / "pair.png"), str(tmp_path / "single.png"), "-o", str(out), "--detect",
            "--all-faces", "--no-mesh", "--animation-format", "none"]
    for status in ("done", "up-to-date"):  # a re-run skips the rendering but still records every face
        assert main(argv) == EXIT_OK
        summary = json.loads((out / "reconstruct.json").read_text())
        inputs = summary["inputs"]
        assert [(r["input"], r["name"], r["status"]) for r in inputs] == [
            (f"{tmp_path / 'pair.png'}#0", "pair-face0", status), (f"{tmp_path / 'pair.png'}#1", "pair-face1", status),
            (f"{tmp_path / 'single.png'}#0", "single-face0", status)]
        assert inputs[1]["face"] == {"box": [66.5, 1.5, 109.5, 47.5], "crop_box": [64, 0, 48, 48],
                                     "confidence": 0.93}
        assert summary["settings"]["all_faces"] is True and summary["counts"][status] == 3
    crop = model.preprocess(pair.crop((64, 0, 112, 48)))[0]
    np.testing.assert_array_equal(_input_panel(out / "pair-face1.png", model.config.image_size), _as_uint8(crop))


@pytest.mark.parametrize(
    "argv",
    [
        ["reconstruct", "missing-folder", "-o", "{out}"],
        ["reconstruct", "{bad}", "-o", "{out}"],
        ["reconstruct", "{face}", "-o", "{out}", "--weights", "{out}/no-such-weights"],
    ],
    ids=["no-match", "all-bad", "bad-weights"],
)
def test_nothing_done(tmp_path, argv: list[str], capsys) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    values = {"out": str(tmp_path / "out"), "bad": str(tmp_path / "bad.png"), "face": str(SAMPLES[0])}
    assert main([a.format(**values) for a in argv]) == EXIT_NOTHING_DONE
    err = capsys.readouterr().err
    assert err.startswith("latentface reconstruct: ") and "Traceback" not in err


@pytest.mark.parametrize("argv", [["reconstruct", "x.png"], ["reconstruct", "-o", "out"],
                                  ["reconstruct", "x.png", "-o", "o", "--frames", "0"],
                                  ["reconstruct", "x.png", "-o", "o", "--animation-format", "mp4"],
                                  ["reconstruct", "x.png", "-o", "o", "--all-faces"]])
def test_usage_errors(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE


def test_expand_inputs(tmp_path) -> None:
    for rel in ("faces/b/2.png", "faces/b/10.png", "faces/a.jpg", "faces/.hidden.png", "faces/notes.txt",
                "faces/out/old.png", "other/c.PNG"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "list.txt").write_text("\ufeff# faces\n../other/c.PNG\n\n../faces/a.jpg\nnope.png\n")
    specs = [tmp_path / "faces", str(tmp_path / "other" / "*.PNG"), f"@{tmp_path / 'lists' / 'list.txt'}",
             str(tmp_path / "empty*"), tmp_path / "faces" / "notes.txt"]
    got = expand_inputs(specs, exclude=[tmp_path / "faces" / "out"])
    rel = [p.resolve().relative_to(tmp_path.resolve()).as_posix() for p in got.files]
    assert rel == ["faces/a.jpg", "faces/b/2.png", "faces/b/10.png", "other/c.PNG", "faces/notes.txt"]
    assert [reason for _, reason in got.problems] == ["no such file or folder", "pattern matches no files"]
    assert got.problems[0][0].endswith("list.txt:5: nope.png")


def test_python_m_reconstruct(tmp_path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "latentface", "reconstruct", str(SAMPLES[0]), "-o", str(out),
                           "--frames", "2"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "reconstructed 1 faces" in proc.stdout
    assert {p.suffix for p in out.iterdir()} == {".png", ".obj", ".mtl", ".gif", ".json"}

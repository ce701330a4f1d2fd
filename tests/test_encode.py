"""Feature extraction (`latentface.extract`) and `latentface encode`: statuses of bad files, per-batch seeds, inputs,
re-runs, resume after SIGKILL, two processes, exit codes, output formats and the face-detection pass."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import seeded_model, tiny_config
from PIL import Image

from latentface import LatentFace
from latentface.cli import EXIT_ERROR, EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, build_parser, main
from latentface.data.records import ImageRecord
from latentface.data.synthfaces import SynthFacesImages
from latentface.errors import WeightsError
from latentface.extract import OK, STAGE1_ARRAYS, batch_seed, encode_records, load_output, run_key

pytestmark = pytest.mark.usefixtures("one_thread")
GOOD = 10  # SynthFaces images f0.png .. f9.png (64 px)
needs_mtcnn = pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None,
                                 reason="facenet-pytorch is not installed (extra `face`)")
BATCH = "3"


def _save(array: np.ndarray, path: Path, mode: str | None = None) -> Path:
    Image.fromarray(array).convert(mode or "RGB").save(path)
    return path




@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """(GOOD, 64, 64, 3) uint8 SynthFaces images."""
    images = SynthFacesImages(GOOD, seed=3).batch(list(range(GOOD))).image
    return (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def good_dir(faces, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for i, face in enumerate(faces):
        _save(face, folder / f"f{i}.png")
    return folder


@pytest.fixture(scope="module")
def mixed_dir(faces, tmp_path_factory) -> Path:
    """Good faces (one grayscale, one RGBA, one JPEG) and every kind of bad file, in a nested folder."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "sub").mkdir()
    _save(faces[0], folder / "a1.png")
    _save(faces[1], folder / "a2.jpg")
    _save(faces[2], folder / "a3_gray.png", "L")
    _save(faces[0], folder / "a4_rgba.png", "RGBA")
    png = _save(faces[3], folder / "sub" / "a10.png").read_bytes()
    (folder / "sub" / "b1_truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "b2_corrupt.jpg").write_bytes(bytes(range(256)) * 4)
    (folder / "b3_text.png").write_text("not an image\n")
    (folder / "b4_empty.jpg").write_bytes(b"")
    _save(faces[4][:8, :8], folder / "b5_small.png")
    return folder


MIXED_STATUS = {
    "a1.png": OK, "a2.jpg": OK, "a3_gray.png": OK, "a4_rgba.png": OK, "b2_corrupt.jpg": "not an image",
    "b3_text.png": "not an image", "b4_empty.jpg": "empty file", "b5_small.png": "image too small",
    "sub/a10.png": OK, "sub/b1_truncated.png": "corrupt or truncated",
}


@pytest.fixture(scope="module")
def model() -> LatentFace:
    return LatentFace.from_pretrained("synthfaces-tiny")


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    return load_output(path)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def _count_features(monkeypatch) -> list[int]:
    """Count calls of `LatentFace.features` (one per encoded batch)."""
    calls: list[int] = []
    original = LatentFace.features

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LatentFace, "features", counted)
    return calls


def test_folder_statuses_nan_rows_and_npz_contents(mixed_dir, tmp_path, capsys) -> None:
    out = tmp_path / "feats.npz"
    assert main(["encode", str(mixed_dir), "-o", str(out), "--batch-size", BATCH]) == EXIT_ERROR
    captured = capsys.readouterr()
    arrays, meta = _load(out)
    names = [Path(f).relative_to(mixed_dir).as_posix() for f in arrays["files"]]
    assert names == list(MIXED_STATUS)  # natural order, subfolders by name
    for name, status in zip(names, arrays["status"], strict=True):
        assert status.startswith(MIXED_STATUS[name]), (name, status)
        if status != OK:
            assert f"skipped {mixed_dir / name}: {status}" in captured.err
    ok = arrays["status"] == OK
    assert arrays["features"].shape == (len(names), 256) and arrays["features"].dtype == np.float32
    assert np.isfinite(arrays["features"][ok]).all() and np.isnan(arrays["features"][~ok]).all()
    assert "label" not in arrays
    assert meta["protocol"] == "fer" and meta["weights"] == "synthfaces-tiny" and meta["seed"] == 0
    assert meta["batch_size"] == 3 and len(meta["key"]) == 64 and meta["latentface_version"]
    assert f"{ok.sum()} encoded, {(~ok).sum()} skipped; {out} written" in captured.out
    # RGBA and grayscale decode to the RGB pixels: the texture and shape columns (no noise) match the RGB image.
    feats = dict(zip(names, arrays["features"], strict=True))
    d = 64
    gray = tmp_path / "gray_as_rgb.png"
    _save(np.asarray(Image.open(mixed_dir / "a3_gray.png").convert("RGB")), gray)
    assert main(["encode", str(gray), "-o", str(tmp_path / "gray.npz")]) == EXIT_OK
    gray_rgb = _load(tmp_path / "gray.npz")[0]["features"][0]
    (tmp_path / "gray.npz").unlink()
    gray.unlink()
    for cols in (slice(d, 2 * d), slice(3 * d, 4 * d)):
        np.testing.assert_allclose(feats["a4_rgba.png"][cols], feats["a1.png"][cols], rtol=0, atol=1e-5)
        np.testing.assert_allclose(feats["a3_gray.png"][cols], gray_rgb[cols], rtol=0, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name != "feats.npz"], "chunks or temporary files left behind"


@pytest.mark.parametrize("protocol", ["fer", "verification"])
def test_features_use_one_generator_per_batch(model, good_dir, tmp_path, protocol) -> None:
    paths = sorted(good_dir.glob("*.png"))
    records = [ImageRecord(p, label=i % 3 if i != 4 else None) for i, p in enumerate(paths)]
    result = encode_records(model, records, tmp_path / "f.npz", protocol=protocol, batch_size=4, seed=7,
                            progress=False)
    arrays, _ = _load(result.path)
    assert result.num_ok == len(paths) and not result.skipped and result.computed_batches == 3
    assert arrays["label"].tolist() == [-1 if r.label is None else r.label for r in records]
    for i, start in enumerate(range(0, len(paths), 4)):
        expected = model.features(paths[start : start + 4], protocol,
                                  generator=torch.Generator().manual_seed(batch_seed(7, i)))
        np.testing.assert_allclose(arrays["features"][start : start + 4], expected.numpy(), rtol=0, atol=1e-5)


def test_flip_encodes_mirrored_images(model, good_dir, tmp_path, capsys) -> None:
    paths = sorted(good_dir.glob("*.png"))[:4]
    mirrored = []
    for p in paths:
        mirrored.append(tmp_path / p.name)
        Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored[-1])
    records = [ImageRecord(p) for p in paths]
    flipped = encode_records(model, records, tmp_path / "a.npz", flip=True, batch_size=2, progress=False)
    direct = encode_records(model, [ImageRecord(p) for p in mirrored], tmp_path / "b.npz", batch_size=2,
                            progress=False)
    plain = encode_records(model, records, tmp_path / "c.npz", batch_size=2, progress=True)
    assert "encode fer" in capsys.readouterr().err  # the progress bar
    a, b, c = (_load(r.path)[0]["features"] for r in (flipped, direct, plain))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert not np.allclose(a, c, atol=1e-3)
    assert flipped.key != plain.key


def test_codes_protocol(model, mixed_dir, tmp_path, capsys) -> None:
    out = tmp_path / "codes.npz"
    assert main(["encode", str(mixed_dir / "a*.png"), str(mixed_dir / "sub" / "a10.png"), "-o", str(out),
                 "--protocol", "codes", "--seed", "5"]) == EXIT_OK
    arrays, meta = _load(out)
    assert [Path(f).name for f in arrays["files"]] == ["a1.png", "a3_gray.png", "a4_rgba.png", "a10.png"]
    widths = {"texture": 64, "shape": 64, "light": 4, "pose": 6, "texture_identity": 64, "texture_expression": 64,
              "shape_identity": 64, "shape_expression": 64}
    assert {k: v.shape for k, v in arrays.items() if k not in ("files", "status")} == {
        k: (4, w) for k, w in widths.items()}
    assert meta["arrays"] == list(widths) and (arrays["status"] == OK).all()
    codes = model.encode([str(f) for f in arrays["files"]])
    for name, ref in (("texture", codes.texture), ("shape", codes.shape), ("light", codes.light),
                      ("pose", codes.pose)):
        np.testing.assert_allclose(arrays[name], ref.detach().numpy(), rtol=0, atol=1e-5)
    parts = model.disentangle(codes, generator=torch.Generator().manual_seed(batch_seed(5, 0)))
    np.testing.assert_allclose(arrays["texture_identity"], parts.identity.texture.detach().numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(arrays["shape_expression"], arrays["shape"] - arrays["shape_identity"])
    assert "4 encoded, 0 skipped" in capsys.readouterr().out


def test_stage1_only_weights_give_stage1_codes(good_dir, tmp_path) -> None:
    model = seeded_model(tiny_config(rdm_width=None))
    records = [ImageRecord(p) for p in sorted(good_dir.glob("*.png"))[:3]]
    with pytest.raises(WeightsError, match="Stage-2 RDM"):
        encode_records(model, records, tmp_path / "f.npz", protocol="fer", progress=False)
    result = encode_records(model, records, tmp_path / "c.npz", protocol="codes", progress=False)
    arrays, meta = _load(result.path)
    assert meta["arrays"] == list(STAGE1_ARRAYS) and set(arrays) == {"files", "status", *STAGE1_ARRAYS}
    np.testing.assert_allclose(arrays["texture"], model.encode([r.path for r in records]).texture.detach().numpy(),
                               rtol=0, atol=1e-5)


def test_folder_glob_and_list_inputs_agree(good_dir, tmp_path) -> None:
    listing = tmp_path / "list.txt"
    names = sorted((p.name for p in good_dir.glob("*.png")), key=lambda n: int(n[1:-4]))
    listing.write_text("# faces\n" + "\n".join(os.path.relpath(good_dir / n, tmp_path) for n in names) + "\n\n")
    runs = {"folder": [str(good_dir)], "glob": [str(good_dir / "f*.png")], "list": [f"@{listing}"]}
    results = {}
    for kind, inputs in runs.items():
        assert main(["encode", *inputs, "-o", str(tmp_path / f"{kind}.npz"), "--batch-size", BATCH]) == EXIT_OK
        results[kind] = _load(tmp_path / f"{kind}.npz")[0]
        assert [Path(f).name for f in results[kind]["files"]] == names  # natural order: f2 before f10
    assert np.array_equal(results["folder"]["features"], results["glob"]["features"])
    assert np.array_equal(results["folder"]["features"], results["list"]["features"])


def test_rerun_skips_done_work_and_changes_redo_it(good_dir, tmp_path, monkeypatch, capsys) -> None:
    calls = _count_features(monkeypatch)
    out = tmp_path / "f.npz"
    argv = ["encode", str(good_dir), "-o", str(out), "--batch-size", BATCH]
    assert main(argv) == EXIT_OK and len(calls) == 4
    stamp, first = out.stat().st_mtime_ns, _load(out)
    assert main(argv) == EXIT_OK and len(calls) == 4  # no model call
    assert out.stat().st_mtime_ns == stamp and "up to date, nothing to do" in capsys.readouterr().out
    assert main([*argv, "--seed", "1"]) == EXIT_OK and len(calls) == 8  # another key: redone, replaced
    second = _load(out)
    assert second[1]["key"] != first[1]["key"]
    d = 64  # same latents, other noise: only the expression columns change
    np.testing.assert_array_equal(second[0]["features"][:, d : 2 * d], first[0]["features"][:, d : 2 * d])
    assert not np.allclose(second[0]["features"][:, :d], first[0]["features"][:, :d])
    assert main([*argv, "--seed", "0"]) == EXIT_OK and len(calls) == 12
    assert _same(_load(out)[0], first[0])  # same seed, same numbers


def test_run_key_covers_weights_settings_and_inputs(model, good_dir, tmp_path) -> None:
    copy = tmp_path / "x.png"
    copy.write_bytes((good_dir / "f0.png").read_bytes())
    records = [ImageRecord(copy), ImageRecord(good_dir / "f1.png", box=(0, 0, 40, 40))]
    settings = dict(protocol="fer", seed=0, batch_size=4)
    key = run_key(model, records, **settings)
    assert run_key(model, list(records), **settings) == key
    variants = [
        run_key(model, records, **{**settings, "protocol": "codes"}),
        run_key(model, records, **{**settings, "seed": 1}),
        run_key(model, records, **{**settings, "batch_size": 2}),
        run_key(model, records, **settings, flip=True),
        run_key(model, records, **settings, min_side=32),
        run_key(model, records, **settings, names=["a", "b"]),
        run_key(model, records, **settings, skip={1: "no face detected"}),
        run_key(model, [records[0], ImageRecord(good_dir / "f1.png", box=(0, 0, 41, 40))], **settings),
        run_key(model, [records[0], ImageRecord(good_dir / "f1.png", box=(0, 0, 40, 40), label=2)], **settings),
        run_key(model, records[::-1], **settings),
    ]
    other = LatentFace.from_pretrained("synthfaces-tiny")
    with torch.no_grad():
        weight = next(other.parameters())
        weight[(0,) * weight.ndim] += 1e-3
    variants.append(run_key(other, records, **settings))
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))
    variants.append(run_key(model, records, **settings))
    assert len({key, *variants}) == len(variants) + 1


_SLOW_ENCODE = """
import sys, time
from latentface.model import LatentFace
features = LatentFace.features
def slow(self, *args, **kwargs):
    time.sleep(0.25)
    return features(self, *args, **kwargs)
LatentFace.features = slow
from latentface.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_leaves_no_output_and_resume_equals_uninterrupted(good_dir, tmp_path, monkeypatch) -> None:
    argv = ["encode", str(good_dir), "--batch-size", "1", "--protocol", "verification"]
    assert main([*argv, "-o", str(tmp_path / "full.npz")]) == EXIT_OK
    out = tmp_path / "run" / "feats.npz"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_ENCODE, *argv, "-o", str(out)],  # one thread, as here
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while len(list(out.parent.glob(".feats.npz.*.chunks/batch-*.npz"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its 3rd chunk"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = len(list(out.parent.glob(".feats.npz.*.chunks/batch-*.npz")))
    assert 3 <= done < GOOD
    calls = _count_features(monkeypatch)
    assert main([*argv, "-o", str(out)]) == EXIT_OK
    assert len(calls) == GOOD - done  # the saved chunks were reused
    assert sorted(p.name for p in out.parent.iterdir()) == ["feats.npz"]
    full, resumed = _load(tmp_path / "full.npz"), _load(out)
    assert _same(full[0], resumed[0]) and full[1] == resumed[1]


def test_failed_batch_keeps_finished_chunks(model, good_dir, tmp_path, monkeypatch) -> None:
    records = [ImageRecord(p) for p in sorted(good_dir.glob("*.png"))]
    reference = encode_records(model, records, tmp_path / "ref.npz", batch_size=3, progress=False)
    original, calls = LatentFace.features, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LatentFace, "features", failing)
    out = tmp_path / "out.npz"
    with pytest.raises(RuntimeError, match="simulated crash"):
        encode_records(model, records, out, batch_size=3, progress=False)
    assert not out.exists() and len(list(tmp_path.glob(".out.npz.*.chunks/batch-*.npz"))) == 2
    stale = tmp_path / ".out.npz.0123456789abcdef.chunks"  # chunks of a run with other settings
    stale.mkdir()
    (stale / "batch-0000000.npz").write_bytes(b"old")
    result = encode_records(model, records, out, batch_size=3, progress=False)
    assert result.computed_batches == 2 and len(calls) == 5
    assert _same(_load(out)[0], _load(reference.path)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "ref.npz"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("detect", [False, pytest.param(True, marks=needs_mtcnn)])
def test_two_processes_equal_one(good_dir, tmp_path, detect) -> None:
    argv = ["encode", str(good_dir), "--batch-size", "2", "--protocol", "codes"]  # 5 batches: 3 and 2
    argv += ["--detect"] if detect else []  # the main process detects; both encode its rows
    code = main([*argv, "-o", str(tmp_path / "one.npz")])  # one thread, as each launched process
    assert code == EXIT_OK or (detect and code == EXIT_ERROR)  # a small render may hide its face from MTCNN
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "latentface", *argv, "-o", str(tmp_path / "two.npz")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == code, done.stderr[-3000:]
    assert done.stdout.count("encoded") == 1, done.stdout  # one summary, from the main process
    one, two = _load(tmp_path / "one.npz"), _load(tmp_path / "two.npz")
    assert _same(one[0], two[0]) and one[1] == two[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"]


_FAILING_PROCESS = """
import sys
import latentface.extract as extract
from latentface.cli import main
if extract.process_state().process_index == 1:
    def fail(*args, **kwargs):
        raise RuntimeError("disk on fire")
    extract.run_batch = fail  # the model pass of every batch, as encode_records calls it
sys.exit(main(sys.argv[1:]))
"""


def test_a_process_failing_while_encoding_stops_every_process(good_dir, tmp_path) -> None:
    script = tmp_path / "failing.py"
    script.write_text(_FAILING_PROCESS)
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(script), "encode", str(good_dir), "--batch-size", "2", "-o", str(tmp_path / "out.npz")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180,  # a hang fails here
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert "another process failed while encoding: RuntimeError: disk on fire" in done.stderr
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(
    ("inputs", "extra", "code", "message"),
    [
        (["f1.png"], [], EXIT_OK, ""),
        (["f1.png", "{tmp}/missing.png"], [], EXIT_ERROR, "skipped input {tmp}/missing.png: no such file"),
        (["{tmp}/nothing-*.png"], [], EXIT_NOTHING_DONE, "error: no input matched"),
        (["f1.png"], ["--weights", "/no/such/weights"], EXIT_NOTHING_DONE, "not a local directory"),
        (["f1.png"], ["--weights", "nobody/nothing", "--local-files-only"], EXIT_NOTHING_DONE, "could not get"),
        (["f1.png"], ["-o", "{tmp}/out.parquet"], EXIT_NOTHING_DONE, "needs pyarrow"),
    ],
)
def test_exit_codes(good_dir, tmp_path, capsys, monkeypatch, inputs, extra, code, message) -> None:
    for module in ("pyarrow", "pyarrow.parquet"):  # as if pyarrow were not installed (nor imported before)
        monkeypatch.setitem(sys.modules, module, None)
    inputs = [str(good_dir / i.format(tmp=tmp_path)) for i in inputs]
    argv = ["encode", *inputs, "-o", str(tmp_path / "out.npz"), *(e.format(tmp=tmp_path) for e in extra)]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message.format(tmp=tmp_path) in captured.err and "Traceback" not in captured.err
    assert captured.err.startswith("latentface encode: ") or code == EXIT_OK
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["out.npz"] if code in (EXIT_OK, EXIT_ERROR) else [])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["encode", "a.png"], "--output"),
        (["encode", "-o", "x.npz"], "INPUT"),
        (["encode", "a.png", "-o", "x.csv"], ".npz or .parquet"),
        (["encode", "a.png", "-o", "x.npz", "--protocol", "pca"], "invalid choice"),
        (["encode", "a.png", "-o", "x.npz", "--batch-size", "0"], "positive"),
        (["encode", "a.png", "-o", "x.npz", "--workers", "-1"], "must be 0 or more"),
        (["encode", "a.png", "-o", "x.npz", "--all-faces"], "--all-faces needs --detect"),
        (["encode", "a.png", "-o", "x.npz", "--device", "toaster"], "not a torch device"),
    ],
)
def test_usage_errors_exit_2(argv, expected, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert expected in capsys.readouterr().err


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: latentface {command}")
    if command == "encode":
        assert all(f"\n  {c}  " in out for c in "0123") and "--detect" in out and "@list.txt" in out


def test_parquet_round_trip(good_dir, tmp_path) -> None:
    pytest.importorskip("pyarrow")
    argv = ["encode", str(good_dir), "--protocol", "codes", "--batch-size", BATCH]
    assert main([*argv, "-o", str(tmp_path / "c.parquet")]) == EXIT_OK
    assert main([*argv, "-o", str(tmp_path / "c.npz")]) == EXIT_OK
    parquet, npz = _load(tmp_path / "c.parquet"), _load(tmp_path / "c.npz")
    assert _same(parquet[0], npz[0]) and parquet[1] == npz[1]


class _FakeCrop:
    def __init__(self, box: tuple[int, int, int, int], confidence: float = 0.95) -> None:
        x, y, w, h = box
        self.crop_box, self.confidence = box, confidence
        self.box = (x + 0.5, y + 1.5, x + w - 0.5, y + h - 2.5)  # the detector's box, inside the crop


class _FakeDetector:
    """Finds no face in 40 px images, one face (inset by 4 px) in squares, two faces in 128x64 images."""

    made: list[dict] = []

    def __init__(self, device: str, crop: str, select: str) -> None:
        self.select = select
        _FakeDetector.made.append({"device": device, "crop": crop, "select": select})

    def detect(self, image: Image.Image) -> list[_FakeCrop]:
        assert image.mode == "RGB"
        w, h = image.size
        if w == 40:
            return []
        if w == h:
            return [_FakeCrop((4, 4, w - 8, h - 8))]
        faces = [_FakeCrop((64, -2, 64, 68), 0.99), _FakeCrop((2, 0, 60, 64), 0.91)]
        return faces if self.select == "all" else faces[:1]


@pytest.mark.parametrize("all_faces", [False, True])
def test_detect_pass_with_fake_detector(model, faces, tmp_path, monkeypatch, capsys, all_faces) -> None:
    monkeypatch.setitem(sys.modules, "latentface.preprocess.faces",
                        types.SimpleNamespace(FaceDetector=_FakeDetector))
    _FakeDetector.made.clear()
    folder = tmp_path / "in"
    folder.mkdir()
    _save(faces[0], folder / "a_one.png")
    _save(np.concatenate([faces[1], faces[2]], axis=1), folder / "b_two.png")
    _save(np.full((40, 40, 3), 128, np.uint8), folder / "c_none.png")
    (folder / "d_bad.png").write_text("nope")
    out = tmp_path / "d.npz"
    argv = ["encode", str(folder), "-o", str(out), "--detect", "--protocol", "codes"]
    assert main([*argv, *(["--all-faces"] if all_faces else [])]) == EXIT_ERROR
    assert _FakeDetector.made == [{"device": "cpu", "crop": "unsup3d", "select": "all" if all_faces else "largest"}]
    arrays, _ = _load(out)
    one = [f"{folder / 'a_one.png'}#0"] if all_faces else [str(folder / "a_one.png")]
    two = [f"{folder / 'b_two.png'}#0", f"{folder / 'b_two.png'}#1"] if all_faces else [str(folder / "b_two.png")]
    assert arrays["files"].tolist() == [*one, *two, str(folder / "c_none.png"), str(folder / "d_bad.png")]
    assert arrays["status"].tolist()[:-2] == [OK] * (1 + len(two))
    assert arrays["status"][-2] == "no face detected" and arrays["status"][-1].startswith("not an image")
    wide = np.concatenate([faces[1], faces[2]], axis=1)
    crops = [faces[0][4:60, 4:60], np.pad(wide, ((2, 2), (0, 0), (0, 0)), mode="edge")[:, 64:128],
             wide[:, 2:62]][: 1 + len(two)]
    expected = model.encode([Image.fromarray(c) for c in crops]).texture.detach().numpy()
    np.testing.assert_allclose(arrays["texture"][: len(crops)], expected, rtol=0, atol=1e-5)
    assert "c_none.png: no face detected" in capsys.readouterr().err
    # Every row says where its face is (NaN without one), so path#k rows map back to their faces.
    crop_boxes = [(4, 4, 56, 56), (64, -2, 64, 68), (2, 0, 60, 64)][: 1 + len(two)]
    np.testing.assert_array_equal(arrays["crop_box"][: len(crop_boxes)], crop_boxes)
    np.testing.assert_array_equal(arrays["face_box"][: len(crop_boxes)],
                                  [(x + 0.5, y + 1.5, x + w - 0.5, y + h - 2.5) for x, y, w, h in crop_boxes])
    np.testing.assert_allclose(arrays["face_confidence"][: len(crop_boxes)], [0.95, 0.99, 0.91][: len(crop_boxes)])
    assert np.isnan(arrays["crop_box"][-2:]).all() and np.isnan(arrays["face_confidence"][-2:]).all()


def test_detect_with_mtcnn(model, good_dir, tmp_path) -> None:
    pytest.importorskip("facenet_pytorch")
    from latentface.preprocess.crops import crop_replicate
    from latentface.preprocess.faces import FaceDetector

    detector = FaceDetector(select="largest")
    found = {i: detector.detect(Image.open(good_dir / f"f{i}.png")) for i in range(GOOD)}
    with_face = [i for i in range(GOOD) if found[i]][:2]
    assert len(with_face) == 2, "MTCNN finds faces in most SynthFaces images"
    folder = tmp_path / "in"
    folder.mkdir()
    paths = [folder / f"f{i}.png" for i in with_face]
    crops = []
    for i, path in zip(with_face, paths, strict=True):
        path.write_bytes((good_dir / f"f{i}.png").read_bytes())
        pixels = np.asarray(Image.open(path).convert("RGB"))
        crops.append(Image.fromarray(crop_replicate(pixels, *found[i][0].crop_box)))
    _save(np.full((64, 64, 3), 128, np.uint8), folder / "grey.png")
    out = tmp_path / "d.npz"
    assert main(["encode", str(folder), "-o", str(out), "--detect", "--protocol", "codes"]) == EXIT_ERROR
    arrays, _ = _load(out)
    assert arrays["status"].tolist() == [OK, OK, "no face detected"]
    np.testing.assert_array_equal(arrays["crop_box"][:2], [found[i][0].crop_box for i in with_face])
    np.testing.assert_allclose(arrays["face_box"][:2], [found[i][0].box for i in with_face], rtol=1e-6)
    assert (arrays["face_confidence"][:2] >= 0.9).all() and np.isnan(arrays["face_confidence"][2])
    expected = model.encode(crops).texture.detach().numpy()
    np.testing.assert_allclose(arrays["texture"][:2], expected, rtol=0, atol=1e-5)
    assert not np.allclose(arrays["texture"][:2], model.encode(paths).texture.detach().numpy(), atol=1e-3)


def test_exif_rotated_and_huge_files_encode_as_their_upright_small_image(faces, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _save(faces[5], folder / "a_upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: the stored pixels are shown turned 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(faces[5]))).save(folder / "b_exif.png", exif=exif)
    Image.fromarray(faces[5]).resize((2048, 2048), Image.Resampling.NEAREST).save(folder / "c_huge.png")
    out = tmp_path / "codes.npz"
    assert main(["encode", str(folder), "-o", str(out), "--protocol", "codes"]) == 0
    arrays, _ = _load(out)
    assert list(arrays["status"]) == [OK] * 3
    model = LatentFace.from_pretrained("synthfaces-tiny")
    small, large = model.preprocess([folder / "a_upright.png", folder / "c_huge.png"])
    assert (small - large).abs().mean() < 0.01  # the huge file is resized to (nearly) the small one's pixels
    expected = model.encode_batch(torch.stack([small, large]))
    for name in ("texture", "shape", "light", "pose"):
        upright, rotated, huge = arrays[name]
        np.testing.assert_allclose(rotated, upright, rtol=0, atol=1e-5)
        np.testing.assert_allclose(huge, getattr(expected, name)[1].detach().numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("protocol", ["fer", "codes"])
def test_decoding_workers_change_nothing(model, mixed_dir, tmp_path, protocol) -> None:
    files = sorted(p for p in mixed_dir.rglob("*") if p.is_file())
    records = [*(ImageRecord(p) for p in files), ImageRecord(mixed_dir / "missing.png"),
               ImageRecord(files[0], box=(0, 0, 8, 8)), ImageRecord(files[0], box=(4, 4, 50, 50))]
    skip = {1: "no face detected"}
    runs = [encode_records(model, records, tmp_path / f"{workers}.npz", protocol=protocol, batch_size=3, skip=skip,
                           workers=workers, progress=False) for workers in (0, 1, 2)]
    assert len({r.key for r in runs}) == 1  # the worker count is not part of the key
    first = _load(runs[0].path)
    for run in runs[1:]:
        again = _load(run.path)
        assert run.status == runs[0].status and _same(first[0], again[0]) and first[1] == again[1]
    expected = [skip.get(i, MIXED_STATUS[p.relative_to(mixed_dir).as_posix()]) for i, p in enumerate(files)]
    expected += ["missing file", "face box too small (8x8 px", OK]
    assert all(s.startswith(e) for s, e in zip(runs[0].status, expected, strict=True)), runs[0].status


def test_custom_work_dir_keeps_other_files_and_ignores_chunks_of_other_runs(model, good_dir, tmp_path) -> None:
    from latentface.extract import array_widths
    from latentface.extract.chunks import chunk_path

    records = [ImageRecord(p) for p in sorted(good_dir.glob("*.png"))]
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    first = encode_records(model, records, tmp_path / "a.npz", protocol="codes", batch_size=4, seed=0,
                           work_dir=work, progress=False)
    assert first.computed_batches == 3 and sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    # Batch 0 of the seed-0 run, saved as a chunk: well formed, but of another run than the seed-1 one below.
    with np.load(tmp_path / "a.npz") as data:
        chunk = {k: data[k][:4] for k in ("status", *array_widths(model, "codes"))}
    np.savez(chunk_path(work, 0), **chunk, key=np.array(first.key))
    second = encode_records(model, records, tmp_path / "b.npz", protocol="codes", batch_size=4, seed=1,
                            work_dir=work, progress=False)
    assert second.computed_batches == 3 and sorted(p.name for p in work.iterdir()) == ["notes.txt"]

"""The bad-input matrix: what a user's disk, files, config and arguments can hold, grouped by class.

Every case is generated here (small files in ``tmp_path``); adding a case is adding one line to its table. Each
class checks that nothing crashes, hangs or slips through as "ok", and that every problem names its input.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import seeded_model, tiny_config
from PIL import Image

import latentface
from latentface import InvalidImageError, LatentFace, LatentFaceConfig, WeightsError
from latentface.cli import EXIT_ERROR, EXIT_NOTHING_DONE, main
from latentface.data.records import ImageRecord
from latentface.extract import NON_FINITE, OK, encode_records, load_output
from latentface.inputs import expand_inputs
from latentface.launched import EXIT_LAUNCHER_GONE
from latentface.output_lock import OutputLock, OutputLockedError, lock_path
from latentface.paths import BROKEN_LINK, LINK_LOOP, display_name, image_suffixes
from latentface.preprocess import MIN_IMAGE_SIDE
from latentface.reconstruct import write_reconstructions

pytestmark = pytest.mark.usefixtures("one_thread")

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SIDE = 32


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (instead of blocking forever) when the test takes more than 60 s, e.g. reading a named pipe."""

    def interrupt(signum: int, frame: object) -> None:
        raise TimeoutError("blocked: something waited forever (a named pipe opened for reading?)")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def face(seed: int = 0, side: int = SIDE) -> np.ndarray:
    """A small random RGB image (uint8)."""
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def save_face(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(face(seed)).save(path)
    return path


# --- Class 1: file-system objects ------------------------------------------------------------------------------
# Each maker puts one bad object named `name` into `folder` and returns its path; the folder also holds a good
# image, so that every run has something to do. `patch` gets the monkeypatch fixture and the bad path, for cases
# that are faked because the tests may run as root (who can read anything).


def _fifo(folder: Path, name: str) -> Path:
    os.mkfifo(folder / name)
    return folder / name


def _socket(folder: Path, name: str) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / name))
    sock.close()
    return folder / name


def _link(target: str) -> Callable[[Path, str], Path]:
    """A maker of a symbolic link to `target` (``{name}``: the link's own name)."""

    def make(folder: Path, name: str) -> Path:
        (folder / name).symlink_to(target.format(name=name))
        return folder / name

    return make


def _unreadable_file(folder: Path, name: str) -> Path:
    return save_face(folder / name)


def _deny(monkeypatch: pytest.MonkeyPatch, function: str, bad: Path) -> None:
    """Make ``os.<function>`` raise PermissionError for `bad` (and, for ``stat``, anything below it)."""
    original = getattr(os, function)

    def denied(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(bad) or os.fspath(path).startswith(os.fspath(bad) + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(os, function, denied)


FS_CASES = [  # (id, maker, patched os function or None, reason reported)
    ("named-pipe", _fifo, None, "not a regular file (named pipe)"),
    ("socket", _socket, None, "not a regular file (socket)"),
    ("device-link", _link("/dev/null"), None, "not a regular file (character device)"),
    ("broken-link", _link("nowhere.png"), None, BROKEN_LINK),
    ("self-link", _link("{name}"), None, LINK_LOOP),
    ("unreadable-file", _unreadable_file, "open", "unreadable file: permission denied"),
]
MODES = ("folder", "glob", "path")


def _spec(mode: str, folder: Path, bad: Path) -> str:
    return {"folder": str(folder), "glob": str(folder / "*.png"), "path": str(bad)}[mode]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("maker", "patch", "reason"), [pytest.param(*c[1:], id=c[0]) for c in FS_CASES])
def test_filesystem_object_is_reported_the_same_way_everywhere(tmp_path, monkeypatch, no_hang, mode, maker, patch,
                                                                reason) -> None:
    folder = tmp_path / "in"
    good = save_face(folder / "good.png")
    bad = maker(folder, "bad.png")
    if patch:
        _deny(monkeypatch, patch, bad)
    got = expand_inputs([_spec(mode, folder, bad)])
    assert got.files == ([] if mode == "path" else [good])
    assert got.problems == [(str(bad), reason)]


def test_symlink_loops_through_folder_and_glob(tmp_path, no_hang) -> None:
    folder = tmp_path / "in"
    good = save_face(folder / "sub" / "good.png")
    (folder / "sub" / "up").symlink_to("..")  # a loop back to `in`
    (folder / "sub" / "self").symlink_to("self")  # a link to itself, without an image suffix: ignored
    (folder / "alias").symlink_to("sub")  # a link to a folder: followed, its files counted once
    for spec in (folder, folder / "**" / "*.png", folder / "**"):
        got = expand_inputs([spec])
        assert got.files == [folder / "alias" / "good.png"], spec
        assert (str(folder / "sub" / "up"), LINK_LOOP) in got.problems and good.is_file()


def test_unreadable_folder_and_parent_are_reported_and_the_run_goes_on(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "in"
    good = save_face(folder / "good.png")
    save_face(folder / "locked" / "hidden-by-lock.png")
    other = save_face(tmp_path / "closed" / "x.png")
    _deny(monkeypatch, "scandir", folder / "locked")
    _deny(monkeypatch, "stat", tmp_path / "closed")  # as a folder without search permission
    got = expand_inputs([folder, other, str(tmp_path / "closed" / "*.png")])
    assert got.files == [good]
    assert got.problems == [(str(folder / "locked"), "cannot list folder: permission denied"),
                            (str(other), "permission denied"),
                            (str(tmp_path / "closed" / "*.png"), "permission denied")]


@pytest.mark.skipif(AS_ROOT, reason="root reads anything (the faked cases above cover it)")
def test_unreadable_by_permissions(tmp_path) -> None:
    folder = tmp_path / "in"
    good = save_face(folder / "good.png")
    locked_file = save_face(folder / "locked.png")
    locked_dir = save_face(folder / "sub" / "x.png").parent
    locked_file.chmod(0)
    locked_dir.chmod(0)
    try:
        got = expand_inputs([folder, locked_dir / "x.png"])
    finally:
        locked_dir.chmod(0o755)
    assert got.files == [good]
    assert got.problems == [(str(locked_file), "unreadable file: permission denied"),
                            (str(locked_dir), "cannot list folder: permission denied"),
                            (str(locked_dir / "x.png"), "permission denied")]


NON_UTF8 = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: not valid UTF-8


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """A folder holding a good image, an image with a non-UTF-8 name, and one of each bad object."""
    folder = tmp_path / "in"
    save_face(folder / "a-good.png")
    save_face(folder / NON_UTF8, seed=1)
    for name, maker, patch, _ in FS_CASES:
        if patch is None:
            maker(folder, f"bad-{name}.png")
    (folder / "loop").symlink_to(".")
    return folder


def test_non_utf8_names_are_listed_and_shown_escaped(odd_folder) -> None:
    got = expand_inputs([odd_folder])
    assert [p.name for p in got.files] == ["a-good.png", NON_UTF8]
    assert display_name(got.files[1]).endswith("caf\\xe9-\\xff.png")


class _FakeDetector:
    """Finds one face: the whole image."""

    def __init__(self, **kwargs: object) -> None:
        pass

    def detect(self, image: Image.Image) -> list[types.SimpleNamespace]:
        w, h = image.size
        return [types.SimpleNamespace(image=image, box=(0.0, 0.0, float(w), float(h)), crop_box=(0, 0, w, h),
                                      confidence=0.9)]


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("detect", [False, True])
def test_encode_folder_of_odd_objects(odd_folder, tmp_path, monkeypatch, capsys, no_hang, suffix, detect) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    monkeypatch.setitem(sys.modules, "latentface.preprocess.faces", types.SimpleNamespace(FaceDetector=_FakeDetector))
    out = tmp_path / f"out{suffix}"
    argv = ["encode", str(odd_folder), "-o", str(out), "--protocol", "codes", *(["--detect"] if detect else [])]
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    arrays, _ = load_output(out)
    assert arrays["files"].tolist() == [str(odd_folder / "a-good.png"), display_name(odd_folder / NON_UTF8)]
    assert arrays["status"].tolist() == [OK, OK]
    for name, *_, reason in FS_CASES[:-1]:
        assert f"skipped input {odd_folder / f'bad-{name}.png'}: {reason}" in err
    assert f"skipped input {odd_folder / 'loop'}: {LINK_LOOP}" in err


def test_reconstruct_folder_of_odd_objects(odd_folder, tmp_path, capsys, no_hang) -> None:
    out = tmp_path / "out"
    code = main(["reconstruct", str(odd_folder), "-o", str(out), "--animation-format", "none", "--no-mesh"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    for name, *_, reason in FS_CASES[:-1]:
        assert f"skipped {odd_folder / f'bad-{name}.png'}: {reason}" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["a-good.png", Path(NON_UTF8).stem + ".png", "reconstruct.json"])
    assert "caf\\\\xe9-\\\\xff.png" in (out / "reconstruct.json").read_text()


def test_fifo_given_to_the_api_is_refused_not_read(tmp_path, no_hang) -> None:
    from latentface.errors import InvalidImageError
    from latentface.preprocess import read_image

    with pytest.raises(InvalidImageError, match="not a regular file"):
        read_image(_fifo(tmp_path, "pipe.png"))


# --- Class 2: formats ----------------------------------------------------------------------------------------------


def test_every_readable_pillow_format_is_listed() -> None:
    suffixes = image_suffixes()
    assert {".gif", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".mpo"} <= set(suffixes)
    assert not {".h5", ".grib", ".bufr", ".mpg", ".pdf"} & set(suffixes)  # identified only, or written only


def _png_with_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG with one extra chunk (correct CRC) right after its header."""
    buffer = io.BytesIO()
    Image.fromarray(face()).save(buffer, "PNG")
    png, end = buffer.getvalue(), 8 + 25  # signature, then the IHDR chunk
    extra = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return png[:end] + extra + png[end:]


def _icon_of_wrong_size() -> bytes:
    """An .ico whose directory announces a 32x32 frame that holds a 16x16 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(face()[:16, :16]).save(buffer, "PNG")
    frame = buffer.getvalue()
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 32, 32, 0, 0, 1, 32, len(frame), 22) + frame


def _saved(fmt: str, mode: str = "RGB", **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(face()).convert(mode).save(buffer, fmt, **options)
        return buffer.getvalue()

    return make


FORMAT_CASES = [  # (file name, maker of its bytes, expected status prefix)
    ("a.gif", _saved("GIF"), OK),
    ("a.tif", _saved("TIFF"), OK),
    ("a.tiff", _saved("TIFF", compression="tiff_lzw"), OK),
    ("a.TIF", _saved("TIFF", "L"), OK),
    ("a.bmp", _saved("BMP"), OK),
    ("a.webp", _saved("WEBP"), OK),
    ("a.jpeg", _saved("JPEG"), OK),
    ("a.ppm", _saved("PPM"), OK),
    ("a.tga", _saved("TGA"), OK),
    ("a.pcx", _saved("PCX"), OK),
    ("a.qoi", _saved("QOI"), OK),
    ("a.apng", _saved("PNG", save_all=True), OK),
    ("a.ico", _saved("ICO", sizes=[(32, 32)]), OK),
    ("damaged-apng.png", lambda: _png_with_chunk(b"acTL", bytes(8)), "damaged image data: Invalid APNG"),
    ("damaged-icon.ico", _icon_of_wrong_size, "damaged image data: Image was not the expected size"),
]


@pytest.fixture(scope="module")
def format_table(tmp_path_factory) -> dict[str, str]:
    """Encode a folder holding one file of each `FORMAT_CASES` row; file name -> status."""
    folder = tmp_path_factory.mktemp("formats")
    for name, make, _ in FORMAT_CASES:
        (folder / name).write_bytes(make())
    out = folder.parent / f"{folder.name}.npz"
    main(["encode", str(folder), "-o", str(out), "--protocol", "codes", "--no-progress"])
    arrays, _ = load_output(out)
    return {Path(f).name: s for f, s in zip(arrays["files"].tolist(), arrays["status"].tolist(), strict=True)}


@pytest.mark.parametrize(("name", "status"), [pytest.param(c[0], c[2], id=c[0]) for c in FORMAT_CASES])
def test_format_is_listed_and_read(format_table, name, status) -> None:
    assert format_table[name].startswith(status)


@pytest.mark.parametrize("name", [c[0] for c in FORMAT_CASES if c[2] != OK])
def test_damage_pillow_warns_of_is_an_error_in_the_api(tmp_path, name) -> None:
    from latentface.errors import DamagedImageError
    from latentface.preprocess import to_batch

    path = tmp_path / name
    path.write_bytes(next(c[1] for c in FORMAT_CASES if c[0] == name)())
    with pytest.raises(DamagedImageError, match="damaged image data"):
        to_batch(path, 64)


# --- Class 3: non-finite results -----------------------------------------------------------------------------------


def _poisoned(value: float, tensor: str = "albedo_net.encoder.0.weight") -> LatentFace:
    """A tiny model with one value of one tensor set to `value`."""
    model = seeded_model(tiny_config())
    with torch.no_grad():
        model.get_parameter(tensor).view(-1)[0] = value
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_on_load_naming_the_tensor(tmp_path, capsys, value) -> None:
    _poisoned(value).save_pretrained(tmp_path / "weights")
    with pytest.raises(WeightsError, match=r"NaN or Inf values in tensors: albedo_net\.encoder\.0\.weight"):
        LatentFace.from_pretrained(tmp_path / "weights")
    save_face(tmp_path / "a.png")
    argv = ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.npz"), "--weights", str(tmp_path / "weights")]
    assert main(argv) == EXIT_NOTHING_DONE
    assert "albedo_net.encoder.0.weight" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("protocol", ["codes", "fer"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_results_are_never_ok_rows(tmp_path, protocol, value) -> None:
    records = [ImageRecord(save_face(tmp_path / f"{i}.png", seed=i)) for i in range(3)]
    result = encode_records(_poisoned(value), records, tmp_path / "out.npz", protocol=protocol, batch_size=2,
                            progress=False)
    arrays, meta = load_output(result.path)
    assert meta["ok"] == 0 and all(s.startswith(f"{NON_FINITE} (NaN or Inf in ") for s in arrays["status"])
    assert all(np.isnan(arrays[name]).all() for name in arrays if name not in ("files", "status"))


def test_one_non_finite_row_in_a_batch(tmp_path, monkeypatch) -> None:
    records = [ImageRecord(save_face(tmp_path / f"{i}.png", seed=i)) for i in range(3)]
    original = LatentFace.encode_batch

    def one_inf(self, batch):
        codes = original(self, batch)
        codes.pose[1, 2] = float("inf")
        return codes

    monkeypatch.setattr(LatentFace, "encode_batch", one_inf)
    result = encode_records(seeded_model(tiny_config()), records, tmp_path / "out.npz", protocol="codes",
                            progress=False)
    arrays, _ = load_output(result.path)
    assert arrays["status"].tolist() == [OK, f"{NON_FINITE} (NaN or Inf in pose)", OK]
    assert np.isnan(arrays["texture"][1]).all() and np.isfinite(arrays["texture"][[0, 2]]).all()


def test_reconstruct_refuses_non_finite_codes(tmp_path) -> None:
    save_face(tmp_path / "in" / "a.png")
    result = write_reconstructions(_poisoned(float("nan")), [tmp_path / "in"], tmp_path / "out", animation=None,
                                   mesh=False)
    assert [(r.status, r.error) for r in result.records] == [("error", "non-finite result (NaN or Inf in its codes)")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["reconstruct.json"]


# --- Class 4: config validation ------------------------------------------------------------------------------------

CONFIG_CASES = [  # (key, bad value, what the error says is accepted)
    ("image_size", 96, "64 * 2**k"),
    ("image_size", 32, "an integer >= 64"),
    ("image_size", "64", "an integer >= 64"),
    ("image_size", 128.0, "an integer >= 64"),
    ("ae_width", 24, "multiple of 16"),
    ("ae_width", 0, "an integer >= 1"),
    ("light_pose_width", -8, "an integer >= 1"),
    ("latent_dim", True, "an integer >= 1"),
    ("confidence_latent_dim", None, "an integer >= 1"),
    ("min_depth", 0, "> 0"),
    ("min_depth", "0.9", "a finite number"),
    ("max_depth", 0.8, "above min_depth = 0.9"),
    ("max_depth", float("nan"), "above min_depth"),
    ("border_depth", -1, "> 0, or null"),
    ("border_columns", -1, "an integer in [0, 31]"),
    ("border_columns", 32, "an integer in [0, 31]"),
    ("border_columns", 2.5, "an integer in [0, 31]"),
    ("fov", 0, "in (0, 180) degrees"),
    ("fov", -10, "in (0, 180) degrees"),
    ("fov", 180, "in (0, 180) degrees"),
    ("fov", float("inf"), "in (0, 180) degrees"),
    ("xyz_rotation_range", -60, ">= 0"),
    ("xy_translation_range", [0.1], ">= 0"),
    ("z_translation_range", -0.1, ">= 0"),
    ("rotation_center_depth", "1", "a finite number"),
    ("min_ambient", -0.1, ">= 0"),
    ("max_ambient", -0.5, "at least min_ambient = 0.0"),
    ("min_diffuse", 2.0, "at least min_diffuse = 2.0"),
    ("rdm_width", 40, "multiple of 2 * rdm_norm_groups = 16"),
    ("rdm_width", 0, "an integer >= 1"),
    ("rdm_norm_groups", 0, "an integer >= 1"),
    ("rdm_layers_per_block", 0, "an integer >= 1"),
    ("num_train_timesteps", 0, "an integer >= 1"),
    ("beta_start", 0, "in (0, 1)"),
    ("beta_start", 0.05, "in (beta_start = 0.05, 1)"),
    ("beta_end", 1.5, "in (beta_start = 0.0001, 1)"),
    ("sampler", "ddpm", "one of ('official', 'ddim')"),
    ("sampling_steps", 0, "an integer in [1, 1000]"),
    ("sampling_steps", 1001, "an integer in [1, 1000]"),
    ("clip_sample", 0, "> 0, or null for no clamping"),
    ("clip_sample", "1", "> 0, or null for no clamping"),
    ("preprocess", "bilinear", "an object with the keys resample and resize_mode"),
    ("preprocess", {"resample": "nearest"}, "one of ('bilinear', 'bicubic')"),
    ("preprocess", {"mode": "stretch"}, "unknown preprocess keys: mode"),
    ("colour", 1, "unknown LatentFaceConfig keys: colour"),
]


def _weights_folder(folder: Path, config: dict) -> Path:
    """A folder with `config` as config.json beside an empty weights file (`info` reads the config only)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize(("key", "value", "accepted"), [pytest.param(*c, id=f"{c[0]}={c[1]!r}") for c in CONFIG_CASES])
def test_config_value_is_refused_naming_key_and_range(tmp_path, capsys, key, value, accepted) -> None:
    config = {**tiny_config().to_dict(), key: value}
    with pytest.raises(ValueError) as info:
        LatentFaceConfig.from_dict(config)
    assert key in str(info.value) and accepted in str(info.value)
    assert main(["info", str(_weights_folder(tmp_path / "w", config))]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("latentface info: error: invalid config.json") and key in err and accepted in err


def test_config_that_is_not_an_object_is_refused(tmp_path, capsys) -> None:
    assert main(["info", str(_weights_folder(tmp_path / "w", [1, 2]))]) == EXIT_ERROR
    assert "is a JSON object of keys and values, got list" in capsys.readouterr().err


@pytest.mark.parametrize(("made", "claimed", "says"),
                         [(64, 128, "image_size 64,"), (128, 64, "image_size 128 or larger")])
def test_wrong_image_size_says_so(tmp_path, made, claimed, says) -> None:
    seeded_model(tiny_config(image_size=made)).save_pretrained(tmp_path / "w")
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    (tmp_path / "w" / "config.json").write_text(json.dumps({**config, "image_size": claimed}))
    with pytest.raises(WeightsError, match=f"made for {says}.* config.json says image_size {claimed}"):
        LatentFace.from_pretrained(tmp_path / "w")


# --- Class 5: API inputs -------------------------------------------------------------------------------------------


def _closed_pil(tmp_path: Path) -> Image.Image:
    path = save_face(tmp_path / "closed.png")
    image = Image.open(path)
    image.load()
    image.close()
    return image


def _file_gone_pil(tmp_path: Path) -> Image.Image:
    """A lazily opened image whose file was closed before its pixels were read."""
    with Image.open(save_face(tmp_path / "lazy.png")) as image:
        pass
    return image


def _batch_with(index: int, value: float) -> torch.Tensor:
    batch = torch.rand(4, 3, SIDE, SIDE)
    batch[index, 1, 2, 3] = value
    return batch


API_CASES = [  # (id, maker of the bad input from tmp_path, what the error says)
    ("empty-numpy", lambda t: np.zeros((0, 0, 3), np.uint8), "image has no pixels"),
    ("empty-numpy-2d", lambda t: np.zeros((5, 0), np.float32), "image has no pixels"),
    ("empty-tensor", lambda t: torch.zeros(3, 0, 5), "image has no pixels"),
    ("empty-batch", lambda t: torch.zeros(0, 3, 64, 64), "the batch holds no images"),
    ("empty-pil", lambda t: Image.new("RGB", (0, 0)), "image has no pixels"),
    ("empty-list", lambda t: [], "input list is empty"),
    ("zero-d-numpy", lambda t: np.array(0.5), "got shape ()"),
    ("zero-d-tensor", lambda t: torch.tensor(0.5), "got shape ()"),
    ("one-d-numpy", lambda t: np.zeros(5), "got shape (5,)"),
    ("bool-numpy", lambda t: np.zeros((8, 8), bool), "unsupported numpy dtype bool"),
    ("int64-numpy", lambda t: np.zeros((8, 8), np.int64), "unsupported numpy dtype int64"),
    ("object-numpy", lambda t: np.array([[None]]), "unsupported numpy dtype object"),
    ("int-tensor", lambda t: torch.zeros(3, 8, 8, dtype=torch.int32), "unsupported tensor dtype"),
    ("complex-tensor", lambda t: torch.zeros(3, 8, 8, dtype=torch.complex64), "unsupported tensor dtype"),
    ("meta-tensor", lambda t: torch.empty(3, 64, 64, device="meta"), "the tensor is on the meta device"),
    ("sparse-tensor", lambda t: torch.eye(64).expand(3, 64, 64).to_sparse(), "of layout torch.sparse_coo"),
    ("two-channels", lambda t: torch.rand(2, 8, 8), "expected 1, 3 or 4 channels"),
    ("nan-in-batch", lambda t: _batch_with(2, float("nan")), "input 0 (torch.Tensor, shape/size (4, 3, 32, 32)), "
                                                               "image 2: contains NaN"),
    ("inf-in-batch", lambda t: _batch_with(3, float("inf")), "image 3: contains NaN or Inf"),
    ("out-of-range-in-batch", lambda t: _batch_with(1, 2.0), "image 1: float values must lie in [0, 1]"),
    ("closed-pil", _closed_pil, "cannot read the PIL image of mode RGB (closed"),
    ("file-gone-pil", _file_gone_pil, "cannot read the PIL image"),
    ("negative-F", lambda t: Image.fromarray(np.full((8, 8), -1, np.float32)), "mode F has values in [-1, -1]"),
    ("nan-F", lambda t: Image.fromarray(np.full((8, 8), np.nan, np.float32)), "mode F contains NaN or Inf"),
    ("huge-F", lambda t: Image.fromarray(np.full((8, 8), 1e6, np.float32)), "outside every range"),
    ("negative-I", lambda t: Image.fromarray(np.full((8, 8), -5, np.int32)), "mode I has values in [-5, -5]"),
    ("unsupported-type", lambda t: {"image": 1}, "unsupported type dict"),
    ("nested-list", lambda t: [[torch.rand(3, 8, 8)]], "unsupported type list"),
    ("missing-file", lambda t: t / "missing.png", "cannot read image"),
    ("pipe", lambda t: _fifo(t, "pipe.png"), "not a regular file"),
]


@pytest.fixture(scope="module")
def api_model() -> LatentFace:
    return seeded_model(tiny_config())


@pytest.mark.parametrize("method", ["encode", "features"])
@pytest.mark.parametrize(("make", "says"), [pytest.param(c[1], c[2], id=c[0]) for c in API_CASES])
def test_bad_api_input_raises_invalid_image_error(api_model, tmp_path, no_hang, method, make, says) -> None:
    bad = make(tmp_path)
    with pytest.raises(InvalidImageError) as info:
        getattr(api_model, method)(bad if isinstance(bad, list) else [torch.rand(3, SIDE, SIDE), bad])
    message = str(info.value)
    assert says.replace("input 0 ", "input 1 ") in message
    assert isinstance(bad, list) or message.startswith("input 1 (")  # the second input is the bad one


def _gray(side: int = SIDE) -> np.ndarray:
    """A grayscale ramp in [0, 1] (float64)."""
    return np.linspace(0, 1, side * side).reshape(side, side)


def _pil_mode(mode: str) -> Callable[[], tuple[Image.Image, np.ndarray]]:
    """A maker of ``(PIL image of `mode`, the RGB float image it shows)`` from a colour image or `_gray`."""

    def make() -> tuple[Image.Image, np.ndarray]:
        rgb = Image.fromarray(face())
        if mode in ("F", "F255", "F65535"):
            scale = {"F": 1.0, "F255": 255.0, "F65535": 65535.0}[mode]
            return Image.fromarray((_gray() * scale).astype(np.float32), "F"), _gray()
        if mode in ("I", "I255"):
            scale = 65535 if mode == "I" else 255
            return Image.fromarray(np.round(_gray() * scale).astype(np.int32), "I"), np.round(_gray() * scale) / scale
        if mode.startswith("I;16"):
            values = np.round(_gray() * 65535).astype(np.uint16)
            order = ">u2" if mode == "I;16B" else "<u2"
            return Image.frombytes(mode, (SIDE, SIDE), values.astype(order).tobytes()), values / 65535
        image = rgb.convert(mode)
        return image, np.asarray(image.convert("LA" if mode == "La" else "RGB").convert("RGB")) / 255

    return make


PIL_MODES = ["1", "L", "P", "PA", "LA", "La", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "I255",
             "I;16", "I;16B", "I;16L", "I;16N", "F", "F255", "F65535"]


@pytest.mark.parametrize("mode", PIL_MODES)
def test_pil_modes_are_read_by_their_value_range(mode) -> None:
    from latentface.preprocess import to_batch

    image, expected = _pil_mode(mode)()
    got = to_batch(image, SIDE)[0].permute(1, 2, 0).numpy()
    expected = np.repeat(expected[:, :, None], 3, axis=2) if expected.ndim == 2 else expected
    np.testing.assert_allclose(got, expected, atol=1.5 / 255)
    assert got.max() > 0.5  # never silently black


# --- Class 6: one rule for every entry point -------------------------------------------------------------------------

SIZE_CASES = [(1, 1), (15, 15), (15, 64), (64, 15), (16, 16), (16, 300), (300, 16), (64, 64)]  # (width, height)


@pytest.fixture(scope="module")
def sized_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sizes")
    for w, h in SIZE_CASES:
        Image.fromarray(face(side=max(w, h))[:h, :w]).save(folder / f"{w}x{h}.png")
    return folder


@pytest.fixture(scope="module")
def cli_verdicts(sized_folder) -> dict[str, dict[str, bool]]:
    """Whether `encode` and `reconstruct` accepted each image (file name -> entry point -> accepted), and the
    skip lines of `reconstruct`."""
    out = sized_folder.parent / f"{sized_folder.name}-out"
    main(["encode", str(sized_folder), "-o", str(out / "codes.npz"), "--protocol", "codes", "--no-progress"])
    arrays, _ = load_output(out / "codes.npz")
    encoded = {Path(f).name: s == OK for f, s in zip(arrays["files"].tolist(), arrays["status"].tolist(), strict=True)}
    main(["reconstruct", str(sized_folder), "-o", str(out / "recon"), "--animation-format", "none", "--no-mesh"])
    summary = json.loads((out / "recon" / "reconstruct.json").read_text())
    rebuilt = {Path(r["input"]).name: r["status"] == "done" for r in summary["inputs"]}
    errors = {Path(r["input"]).name: r["error"] for r in summary["inputs"] if r["error"]}
    return {"encode": encoded, "reconstruct": rebuilt, "errors": errors}  # type: ignore[dict-item]


@pytest.mark.parametrize(("width", "height"), SIZE_CASES, ids=[f"{w}x{h}" for w, h in SIZE_CASES])
def test_every_entry_point_accepts_and_refuses_the_same_images(api_model, sized_folder, cli_verdicts, width,
                                                               height) -> None:
    name, accepted = f"{width}x{height}.png", min(width, height) >= MIN_IMAGE_SIDE
    assert cli_verdicts["encode"][name] is accepted
    assert cli_verdicts["reconstruct"][name] is accepted
    sources = [sized_folder / name, Image.open(sized_folder / name),
               torch.from_numpy(np.array(Image.open(sized_folder / name))).permute(2, 0, 1)]
    for source in sources:
        if accepted:
            api_model.encode(source)
        else:
            with pytest.raises(InvalidImageError, match=f"image is {width}x{height} pixels, smaller than the minimum"):
                api_model.encode(source)
    if not accepted:  # the skip line names the file and what was too small, not "input 0"
        assert cli_verdicts["errors"][name] == (f"the image: image is {width}x{height} pixels, smaller than the "
                                                f"minimum of {MIN_IMAGE_SIDE} on a side")


class _TinyFaceDetector:
    """Finds a 40x40 face and an 8x8 one."""

    def __init__(self, **kwargs: object) -> None:
        pass

    def detect(self, image: Image.Image) -> list[types.SimpleNamespace]:
        return [types.SimpleNamespace(image=image.crop((0, 0, s, s)), box=(0.0, 0.0, float(s), float(s)),
                                      crop_box=(0, 0, s, s), confidence=0.9) for s in (40, 8)]


def test_reconstruct_skip_line_names_the_detected_face(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "latentface.preprocess.faces",
                        types.SimpleNamespace(FaceDetector=_TinyFaceDetector))
    Image.fromarray(face(side=64)).save(tmp_path / "group.png")
    argv = ["reconstruct", str(tmp_path / "group.png"), "-o", str(tmp_path / "out"), "--detect", "--all-faces",
            "--animation-format", "none", "--no-mesh"]
    assert main(argv) == EXIT_ERROR
    assert (f"skipped {tmp_path / 'group.png'}#1: the detected face: image is 8x8 pixels, smaller than the minimum "
            f"of {MIN_IMAGE_SIDE} on a side") in capsys.readouterr().err


@pytest.mark.parametrize("min_side", ["1", "15"])
def test_encode_min_side_cannot_go_below_the_rule(tmp_path, capsys, min_side) -> None:
    with pytest.raises(SystemExit):
        main(["encode", "x.png", "-o", str(tmp_path / "o.npz"), "--min-side", min_side])
    assert f"must be at least {MIN_IMAGE_SIDE}" in capsys.readouterr().err


# --- Class 7: multi-process shutdown and concurrent runs ---------------------------------------------------------

_SLOW_WORKER = """
import os, sys, time
from pathlib import Path
from latentface.model import LatentFace
Path(os.environ["LATENTFACE_TEST_PIDS"], str(os.getpid())).touch()
method = os.environ.get("LATENTFACE_TEST_SLOW", "features")  # the model call that encodes a batch
original = getattr(LatentFace, method)
def slow(self, *args, **kwargs):
    time.sleep(0.3)
    return original(self, *args, **kwargs)
setattr(LatentFace, method, slow)
from latentface.cli import main
sys.exit(main(sys.argv[1:]))
"""

_KILL_THE_LAUNCHER = """
import ctypes, json, os, signal, subprocess, sys, time
from pathlib import Path
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphaned workers come here
pids, out = Path(os.environ["LATENTFACE_TEST_PIDS"]), Path(sys.argv[1])
launcher = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 120
while len(list(pids.iterdir())) < 2 or not list(out.parent.glob(f".{out.name}.*.chunks/batch-*.npz")):
    assert launcher.poll() is None and time.monotonic() < deadline, "the run ended or stalled before its 1st chunk"
    time.sleep(0.05)
workers = {int(p.name) for p in pids.iterdir()}
os.kill(launcher.pid, signal.SIGKILL)
launcher.wait()
codes, deadline = {}, time.monotonic() + 30
while set(codes) < workers and time.monotonic() < deadline:
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid in workers:
        codes[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.02 if pid == 0 else 0)
for pid in workers - set(codes):  # still running after 30 s: the test fails, and nothing is left behind
    os.kill(pid, signal.SIGKILL)
print(json.dumps(sorted(codes.values())))
"""


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child process that imports this checkout of latentface (not another installed copy)."""
    root = str(Path(latentface.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def six_faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("six")
    for i in range(6):
        save_face(folder / f"f{i}.png", seed=i)
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER is Linux only")
def test_killing_the_launcher_stops_its_workers(six_faces, tmp_path) -> None:
    script, pids, out = tmp_path / "worker.py", tmp_path / "pids", tmp_path / "out" / "codes.npz"
    script.write_text(_SLOW_WORKER)
    pids.mkdir()
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              str(script), "encode", str(six_faces), "-o", str(out), "--batch-size", "1", "--no-progress"]
    done = subprocess.run([sys.executable, "-c", _KILL_THE_LAUNCHER, str(out), *launch], capture_output=True,
                          text=True, timeout=240, env=_env(LATENTFACE_TEST_PIDS=str(pids)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == [EXIT_LAUNCHER_GONE, EXIT_LAUNCHER_GONE]
    assert not out.exists() and not _locked(out)  # nothing written, and the killed run left no lock held


def _locked(out: Path) -> bool:
    try:
        with OutputLock(out):
            return False
    except OutputLockedError:
        return True


def test_output_lock_refuses_a_second_holder_and_names_the_first(tmp_path) -> None:
    out = tmp_path / "sub" / "codes.npz"
    with OutputLock(out):
        assert lock_path(out).read_text() == str(os.getpid())
        with pytest.raises(OutputLockedError, match=rf"being written by another run \(process {os.getpid()}"):
            OutputLock(out).acquire()
    assert not lock_path(out).exists() and not _locked(out)


_FORK_THEN_DIE = """
import os, signal, sys, time
from latentface.output_lock import OutputLock
OutputLock(sys.argv[1]).acquire()
child = os.fork()  # as a DataLoader worker that decodes images
if child == 0:
    for fd in (1, 2):  # let the parent's output pipes close
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forked_child_outliving_the_run_does_not_hold_its_lock(tmp_path) -> None:
    out = tmp_path / "codes.npz"
    done = subprocess.run([sys.executable, "-c", _FORK_THEN_DIE, str(out)], capture_output=True, text=True,
                          timeout=60, env=_env())
    child = int(done.stdout)
    try:
        os.kill(child, 0)  # still running
        assert not _locked(out)
    finally:
        os.kill(child, signal.SIGKILL)


def test_second_encode_on_the_same_output_is_refused_while_the_first_writes(six_faces, tmp_path, capsys) -> None:
    out = tmp_path / "codes.npz"
    argv = ["encode", str(six_faces), "-o", str(out), "--batch-size", "1", "--protocol", "codes", "--no-progress"]
    first = subprocess.Popen([sys.executable, "-c", _SLOW_WORKER, *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=_env(LATENTFACE_TEST_PIDS=str(tmp_path), LATENTFACE_TEST_SLOW="encode_batch"))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".codes.npz.*.chunks/batch-*.npz")):
        assert first.poll() is None and time.monotonic() < deadline, "the first run ended before its 1st chunk"
        time.sleep(0.02)
    assert main(argv) == EXIT_NOTHING_DONE
    assert f"is being written by another run (process {first.pid}" in capsys.readouterr().err
    assert first.wait(timeout=120) == 0, first.stderr.read()
    arrays, _ = load_output(out)
    assert arrays["status"].tolist() == [OK] * 6
    assert main(argv) == 0  # up to date: the same key, nothing to do, and the lock is free again
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.isdigit()) == ["codes.npz"]

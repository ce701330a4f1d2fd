"""The `latentface` command line: convert and info through `main`, and `python -m latentface` in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from latentface import LatentFace, LatentFaceConfig
from latentface.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main


@pytest.fixture(scope="module")
def converted(unsup3d_checkpoint_path, tmp_path_factory) -> Path:
    """A folder written by ``latentface convert --unsup3d checkpoint030.pth -o DIR``."""
    out = tmp_path_factory.mktemp("cli") / "weights"
    assert main(["convert", "--unsup3d", str(unsup3d_checkpoint_path), "-o", str(out)]) == EXIT_OK
    return out


def test_convert_writes_loadable_folder(converted, capsys) -> None:
    assert {p.name for p in converted.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    model = LatentFace.from_pretrained(converted)
    assert model.config.rdm_width is None
    assert "checkpoint030.pth" in (converted / "README.md").read_text()


def test_convert_into_non_empty_folder(converted, unsup3d_checkpoint_path, tmp_path, capsys) -> None:
    out = tmp_path / "w"
    shutil.copytree(converted, out)
    (out / "model.safetensors").write_bytes(b"stale")
    argv = ["convert", "--unsup3d", str(unsup3d_checkpoint_path), "-o", str(out)]
    assert main(argv) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "not empty" in captured.err and "--overwrite" in captured.err and captured.out == ""
    assert (out / "model.safetensors").read_bytes() == b"stale"
    assert main([*argv, "--overwrite"]) == EXIT_OK
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and captured.err == ""
    got = safetensors.torch.load_file(str(out / "model.safetensors"))
    ref = safetensors.torch.load_file(str(converted / "model.safetensors"))
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_convert_bad_checkpoint(tmp_path, capsys, content) -> None:
    bad = tmp_path / "checkpoint030.pth"
    bad.write_bytes(content)
    out = tmp_path / "out"
    assert main(["convert", "--unsup3d", str(bad), "-o", str(out)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.err.startswith("latentface convert: error: ")
    assert "cannot read checkpoint" in captured.err and str(bad) in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()


def test_convert_missing_checkpoint_file(tmp_path, capsys) -> None:
    assert main(["convert", "--rdm", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "out")]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["convert", "-o", "somewhere"], "--unsup3d and/or --rdm"),
        (["convert", "--unsup3d", "x.pth"], "--output"),
        (["info"], "weights"),
        ([], "command"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(argv, expected, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert expected in capsys.readouterr().err


def test_info_prints_config_and_card(converted, capsys) -> None:
    assert main(["info", str(converted)]) == EXIT_OK
    out = capsys.readouterr().out
    config_text = (converted / "config.json").read_text(encoding="utf-8")
    assert config_text in out
    start = out.index("{")
    config = LatentFaceConfig.from_dict(json.JSONDecoder().raw_decode(out[start:])[0])
    assert config == LatentFaceConfig.from_json(config_text) and config.rdm_width is None
    assert (converted / "README.md").read_text(encoding="utf-8") in out
    assert str(converted) in out


def test_info_unknown_weights(tmp_path, capsys) -> None:
    assert main(["info", str(tmp_path / "does-not-exist"), "--local-files-only"]) == EXIT_ERROR
    assert "latentface info: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--help"], ["convert", "info"]), (["convert", "--help"], ["--unsup3d", "--rdm", "--output", "--overwrite"])],
)
def test_python_m_help(args, expected) -> None:
    proc = subprocess.run([sys.executable, "-m", "latentface", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: latentface")
    assert all(word in proc.stdout for word in expected)

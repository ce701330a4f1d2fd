"""Atomic writes and `.npz` bytes (`latentface.fileio`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from latentface.fileio import npz_bytes, write_atomic


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_writes_content_with_the_umask_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "sub" / "file.bin", b"abc")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"abc"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "file.txt", b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_never_touches_the_process_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The umask is process-wide: reading it by setting it races with other threads creating files."""

    def forbidden(mask: int) -> int:
        raise AssertionError("write_atomic changed the process umask")

    monkeypatch.setattr(os, "umask", forbidden)
    assert write_atomic(tmp_path / "file.bin", b"x").read_bytes() == b"x"


def test_concurrent_writes_keep_the_mode_and_leave_no_temporary(tmp_path: Path) -> None:
    import threading

    old = os.umask(0o027)
    try:
        threads = [threading.Thread(target=write_atomic, args=(tmp_path / f"f{i % 4}.bin", bytes([i]) * 1000))
                   for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.bin", "f1.bin", "f2.bin", "f3.bin"]
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert len(data) == 1000 and len(set(data)) == 1  # one whole write, never a mix
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_bytes_round_trip(tmp_path: Path, compressed: bool) -> None:
    arrays = {"zeros": np.zeros((64, 64), np.float32), "text": np.array("key"), "ints": np.arange(5)}
    data = npz_bytes(arrays, compressed=compressed)
    with np.load(write_atomic(tmp_path / "a.npz", data)) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(loaded[name], value)
    assert (len(data) < 64 * 64 * 4) == compressed  # zeros deflate to almost nothing; stored, they take 16 KiB

"""Atomic writes (`latentface.fileio.write_atomic`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from latentface.fileio import write_atomic


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

"""`latentface.download`: resumable, atomic downloads from a loopback server that breaks connections on demand."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from file_server import FileServer

from latentface import DownloadError
from latentface.download import MIRROR_ENV, download_file, mirrored

CONTENT = bytes(range(256)) * 4096  # 1 MiB
NAME = "pretrained_celeba.zip"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FileServer({NAME: CONTENT}) as running:
        yield running


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_is_atomic_and_returns_the_sha256(server: FileServer, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    digest = download_file(f"{server.url}/{NAME}", tmp_path / NAME)
    assert (tmp_path / NAME).read_bytes() == CONTENT and digest == hashlib.sha256(CONTENT).hexdigest()
    assert _leftovers(tmp_path) == [NAME] and server.gets(NAME) == [None]
    assert NAME in capsys.readouterr().err  # the progress bar, labelled with the file


def test_interrupted_download_resumes_where_it_stopped(server: FileServer, tmp_path: Path) -> None:
    server.cut(NAME, 300_000)
    with pytest.raises(DownloadError, match=r"failed after 300000 bytes \(the connection closed with 748576 bytes "
                                            r"to go, 1 attempts\); the part file .* is kept"):
        download_file(f"{server.url}/{NAME}", tmp_path / NAME, retries=0, progress=False)
    assert not (tmp_path / NAME).exists() and (tmp_path / f"{NAME}.part").stat().st_size == 300_000
    download_file(f"{server.url}/{NAME}", tmp_path / NAME, progress=False)
    assert server.gets(NAME) == [None, "bytes=300000-"]
    assert (tmp_path / NAME).read_bytes() == CONTENT and _leftovers(tmp_path) == [NAME]


def test_a_broken_connection_is_resumed_within_the_call(server: FileServer, tmp_path: Path) -> None:
    server.cut(NAME, 1000)
    download_file(f"{server.url}/{NAME}", tmp_path / NAME, progress=False)
    assert server.gets(NAME) == [None, "bytes=1000-"] and (tmp_path / NAME).read_bytes() == CONTENT


def _no_ranges(server: FileServer) -> None:
    server.ranges = False


def _file_changed(server: FileServer) -> None:
    server.files[NAME] = CONTENT[::-1]  # another ETag: If-Range gets the whole new file


def _file_shrank(server: FileServer) -> None:
    server.files[NAME] = CONTENT[:1000]  # the part file is longer than the file: 416, start again


@pytest.mark.parametrize("change", [_no_ranges, _file_changed, _file_shrank])
def test_restarts_from_zero_when_the_part_cannot_be_continued(server: FileServer, tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    server.cut(NAME, 5000)
    with pytest.raises(DownloadError):
        download_file(f"{server.url}/{NAME}", tmp_path / NAME, retries=0, progress=False)
    change(server)
    download_file(f"{server.url}/{NAME}", tmp_path / NAME, progress=False)
    assert (tmp_path / NAME).read_bytes() == server.files[NAME] and _leftovers(tmp_path) == [NAME]
    assert server.gets(NAME)[1] == "bytes=5000-"


def test_sha256_mismatch_deletes_the_download(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"SHA-256 {hashlib.sha256(CONTENT).hexdigest()} differs from the "
                                            f"expected {'0' * 64}; the download was deleted"):
        download_file(f"{server.url}/{NAME}", tmp_path / NAME, sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path) == []


def test_http_errors_and_offline(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/missing.zip", tmp_path / "missing.zip", progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(server.requests)
    with pytest.raises(DownloadError, match="downloads are disabled"):
        download_file(f"{server.url}/{NAME}", tmp_path / NAME, progress=False)
    assert len(server.requests) == requests and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("mirror", "expected"),
    [
        (None, "https://origin.example/a/b/pretrained_celeba.zip"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/pretrained_celeba.zip"),
        ("https://mirror.example/weights/", "https://mirror.example/weights/pretrained_celeba.zip"),
    ],
)
def test_mirror_replaces_everything_before_the_file_name(monkeypatch: pytest.MonkeyPatch, mirror: str | None,
                                                         expected: str) -> None:
    if mirror is None:
        monkeypatch.delenv(MIRROR_ENV, raising=False)
    else:
        monkeypatch.setenv(MIRROR_ENV, mirror)
    assert mirrored("https://origin.example/a/b/pretrained_celeba.zip") == expected


def test_part_file_of_another_url_is_not_continued(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(os.urandom(100))  # no record of where it came from
    download_file(f"{server.url}/{NAME}", tmp_path / NAME, progress=False)
    assert server.gets(NAME) == [None] and (tmp_path / NAME).read_bytes() == CONTENT

"""The fake Hub answers the real ``hf_hub_download``: revisions, cache layout, cache hits, offline use, typed errors."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import FakeHub, git_blob_sha1
from huggingface_hub import constants, errors, hf_hub_download

# huggingface_hub >= 1.0 splits the remote case off EntryNotFoundError.
RemoteEntryNotFoundError = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
REPO = "someone/tiny"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.patch_client(monkeypatch)
        yield server


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _file_calls(hub: FakeHub) -> list[str]:
    """Methods of the requests for files (huggingface_hub >= 2 also GETs ``/api/agent-harnesses`` once a process)."""
    return [method for method, path in hub.requests if "/resolve/" in path]


def test_download_at_main_lands_in_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    sha = hub.add_commit(REPO, {"config.json": b"{}", "sub dir/w.bin": b"\x00\x01" * 100})
    path = hf_hub_download(REPO, "sub dir/w.bin", cache_dir=tmp_path)
    storage = tmp_path / "models--someone--tiny"
    assert Path(path) == storage / "snapshots" / sha / "sub dir" / "w.bin"
    assert _read(path) == b"\x00\x01" * 100
    assert (storage / "refs" / "main").read_text() == sha
    assert (storage / "blobs" / git_blob_sha1(b"\x00\x01" * 100)).is_file()
    assert _file_calls(hub) == ["HEAD", "GET"]


def test_sha_pins_an_old_commit_after_main_moves(hub: FakeHub, tmp_path: Path) -> None:
    old = hub.add_commit(REPO, {"config.json": b"old"})
    new = hub.add_commit(REPO, {"config.json": b"new"})
    assert old != new
    assert _read(hf_hub_download(REPO, "config.json", cache_dir=tmp_path)) == b"new"
    assert _read(hf_hub_download(REPO, "config.json", revision=old, cache_dir=tmp_path)) == b"old"
    assert (tmp_path / "models--someone--tiny" / "refs" / "main").read_text() == new


def test_tags_and_other_branches(hub: FakeHub, tmp_path: Path) -> None:
    v1 = hub.add_commit(REPO, {"config.json": b"v1"})
    hub.add_tag(REPO, "v1", v1)
    hub.add_commit(REPO, {"config.json": b"v2"})
    hub.add_commit(REPO, {"config.json": b"dev"}, branch="dev")
    assert _read(hf_hub_download(REPO, "config.json", revision="v1", cache_dir=tmp_path)) == b"v1"
    assert _read(hf_hub_download(REPO, "config.json", revision="dev", cache_dir=tmp_path)) == b"dev"
    assert _read(hf_hub_download(REPO, "config.json", cache_dir=tmp_path)) == b"v2"
    with pytest.raises(ValueError, match="no commit"):
        hub.add_tag(REPO, "bad", "0" * 40)


def test_cached_file_is_not_fetched_again(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = hub.add_commit(REPO, {"config.json": b"{}"})
    first = hf_hub_download(REPO, "config.json", cache_dir=tmp_path)
    hub.requests.clear()
    assert hf_hub_download(REPO, "config.json", cache_dir=tmp_path) == first
    assert _file_calls(hub) == ["HEAD"]  # metadata check only, no content
    hub.requests.clear()
    assert hf_hub_download(REPO, "config.json", revision=sha, cache_dir=tmp_path) == first
    assert hf_hub_download(REPO, "config.json", cache_dir=tmp_path, local_files_only=True) == first
    assert _file_calls(hub) == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    assert hf_hub_download(REPO, "config.json", cache_dir=tmp_path) == first
    assert hub.requests == []


@pytest.mark.parametrize(
    "repo_id,revision,filename,error",
    [
        ("someone/missing", "main", "config.json", errors.RepositoryNotFoundError),
        (REPO, "nope", "config.json", errors.RevisionNotFoundError),
        (REPO, "main", "missing.json", RemoteEntryNotFoundError),
    ],
)
def test_not_found_raises_typed_errors(
    hub: FakeHub, tmp_path: Path, repo_id: str, revision: str, filename: str, error: type[Exception]
) -> None:
    hub.add_commit(REPO, {"config.json": b"{}"})
    with pytest.raises(error):
        hf_hub_download(repo_id, filename, revision=revision, cache_dir=tmp_path)


def test_range_request_gets_partial_content(hub: FakeHub) -> None:
    hub.add_commit(REPO, {"w.bin": b"0123456789"})
    conn = http.client.HTTPConnection(hub.endpoint.removeprefix("http://"), timeout=5)
    try:
        conn.request("GET", f"/{REPO}/resolve/main/w.bin", headers={"Range": "bytes=4-"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (206, b"456789")
        assert response.headers["Content-Range"] == "bytes 4-9/10"
    finally:
        conn.close()


def test_subprocess_uses_hf_endpoint_from_env(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_commit(REPO, {"config.json": b"from the fake hub"})
    code = f"from huggingface_hub import hf_hub_download; print(open(hf_hub_download({REPO!r}, 'config.json')).read())"
    env = {**os.environ, **hub.env(), "HF_HUB_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the fake hub"


def test_missing_file_is_remembered_for_its_commit(hub: FakeHub, tmp_path: Path) -> None:
    sha = hub.add_commit(REPO, {"config.json": b"{}"})
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.json", cache_dir=tmp_path)
    assert (tmp_path / "models--someone--tiny" / ".no_exist" / sha / "missing.json").is_file()

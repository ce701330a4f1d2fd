"""`from_pretrained` and `push_to_hub` through the real huggingface_hub client against a local server answering the
Hub's endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import seeded_model, tiny_config
from hub_server import FakeHub

from latentface import LatentFace, WeightsError


def _files(model: LatentFace, folder: Path) -> dict[str, bytes]:
    model.save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _content_gets(hub: FakeHub, filename: str) -> int:
    return sum(1 for method, path in hub.requests if method == "GET" and path.endswith("/" + filename))


def test_download_revisions_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: torch.Tensor) -> None:
    old, new = seeded_model(tiny_config(), seed=1), seeded_model(tiny_config(), seed=2)
    cache = tmp_path / "cache"
    with FakeHub() as hub:
        hub.patch_client(monkeypatch)
        first = hub.add_commit("lab/latentface-tiny", _files(old, tmp_path / "old"))
        hub.add_tag("lab/latentface-tiny", "v1", first)
        hub.add_commit("lab/latentface-tiny", _files(new, tmp_path / "new"))

        def load(name: str, **kw: object) -> torch.Tensor:
            return LatentFace.from_pretrained(name, cache_dir=cache, **kw).encode(images).texture  # type: ignore[arg-type]

        expected_old, expected_new = old.encode(images).texture, new.encode(images).texture
        assert torch.equal(load("lab/latentface-tiny"), expected_new)
        assert torch.equal(load(f"lab/latentface-tiny@{first}"), expected_old)
        assert torch.equal(load("hf-hub:lab/latentface-tiny@v1"), expected_old)
        assert torch.equal(load("lab/latentface-tiny", revision=first), expected_old)
        downloads = _content_gets(hub, "model.safetensors")
        assert downloads == 2  # one per distinct commit

        # Loading again is served from the cache: no new content download, and offline it needs no server at all.
        assert torch.equal(load("lab/latentface-tiny"), expected_new)
        assert _content_gets(hub, "model.safetensors") == downloads
        served = len(hub.requests)
        assert torch.equal(load("lab/latentface-tiny", local_files_only=True), expected_new)
        assert torch.equal(load(f"lab/latentface-tiny@{first}", local_files_only=True), expected_old)
        assert not [r for r in hub.requests[served:] if "/resolve/" in r[1]]


HUB_ERROR_CASES = [("lab/missing", "RepositoryNotFound"), ("lab/latentface-tiny@nope", "RevisionNotFound")]


@pytest.mark.parametrize("name,match", HUB_ERROR_CASES)
def test_hub_errors_become_weights_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, match: str
) -> None:
    with FakeHub() as hub:
        hub.patch_client(monkeypatch)
        hub.add_commit("lab/latentface-tiny", _files(seeded_model(tiny_config()), tmp_path / "w"))
        with pytest.raises(WeightsError, match=match):
            LatentFace.from_pretrained(name, cache_dir=tmp_path / "cache")


def test_repo_without_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(seeded_model(tiny_config()), tmp_path / "w")
    del files["model.safetensors"]
    with FakeHub() as hub:
        hub.patch_client(monkeypatch)
        hub.add_commit("lab/config-only", files)
        with pytest.raises(WeightsError, match="EntryNotFound"):
            LatentFace.from_pretrained("lab/config-only", cache_dir=tmp_path / "cache")


def test_push_to_hub_creates_repo_and_branch_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             images: torch.Tensor) -> None:
    model = seeded_model(tiny_config(), seed=4)
    with FakeHub() as hub:
        hub.patch_client(monkeypatch)
        info = model.push_to_hub("me/tiny", revision="dev", private=True, commit_message="first weights")
        branches = hub.branches("me/tiny")
        assert hub.is_private("me/tiny") and info.oid == branches["dev"] != branches["main"]
        assert set(hub.files("me/tiny", "main")) == {".gitattributes"}  # the default branch is untouched
        assert set(hub.files("me/tiny", "dev")) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
        assert hub.message("me/tiny", info.oid) == "first weights"
        loaded = LatentFace.from_pretrained("me/tiny@dev", cache_dir=tmp_path / "cache")
        assert torch.equal(loaded.encode(images).texture, model.encode(images).texture)

        # The branch exists now: the same weights make no commit, changed ones a commit on top of it.
        assert model.push_to_hub("me/tiny", revision="dev").oid == info.oid
        with torch.no_grad():
            loaded.depth_net.encoder[0].weight.add_(0.01)
        tuned = loaded.push_to_hub("me/tiny", revision="dev")
        assert tuned.oid == hub.branches("me/tiny")["dev"] != info.oid
        card = hub.files("me/tiny", "dev")["README.md"].decode()
        assert "Derived from `me/tiny@dev`" in card
        main = model.push_to_hub("me/tiny")  # no revision: the default branch
        assert main.oid == hub.branches("me/tiny")["main"] and "model.safetensors" in hub.files("me/tiny")

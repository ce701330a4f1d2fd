"""Weights by name: archives in the published layouts (generated weights) served by a loopback server stand in for
the authors' files; they are downloaded, checked, converted and cached once, then load offline."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import latentface_checkpoint, official_rdm, official_stage1
from file_server import FileServer

from latentface import DownloadError, LatentFace, WeightsError, list_pretrained
from latentface.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from latentface.download import MIRROR_ENV
from latentface.pretrained import REGISTRY, download

UNSUP3D = ["unsup3d-celeba", "unsup3d-synface"]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _file_name(name: str) -> str:
    url = REGISTRY[name].url
    assert url is not None
    return url.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def checkpoint_bytes(unsup3d_checkpoint_path: Path) -> bytes:
    """The bytes of a ``checkpoint030.pth`` in Unsup3D's layout (full size, generated weights)."""
    return unsup3d_checkpoint_path.read_bytes()


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, bytes]], FileServer]:
    """Start a file server serving the given archives under /mirror/ and point downloads at it."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    servers: list[FileServer] = []

    def start(files: dict[str, bytes]) -> FileServer:
        server = FileServer({f"mirror/{k}": v for k, v in files.items()}).__enter__()
        servers.append(server)
        monkeypatch.setenv(MIRROR_ENV, f"{server.url}/mirror/")
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.__exit__(None, None, None)


def _cache_files(cache: Path) -> list[str]:
    """Everything in the cache except lock files."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")


@pytest.mark.parametrize("name", UNSUP3D)
def test_downloaded_once_checked_converted_then_offline(name: str, checkpoint_bytes: bytes, official_stage1_weights,
                                                        mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        images: torch.Tensor) -> None:
    entry = REGISTRY[name]
    assert entry.member is not None
    archive = _zip({entry.member.rsplit("/", 1)[0] + "/": b"", entry.member: checkpoint_bytes})
    server = mirror({_file_name(name): archive})
    cache = tmp_path / "cache"
    assert not {r.name: r for r in list_pretrained(cache_dir=cache)}[name].cached

    model = LatentFace.from_pretrained(name, cache_dir=cache)
    assert server.gets(f"mirror/{_file_name(name)}") == [None]
    stage1 = official_stage1_weights
    state = model.state_dict()
    assert torch.equal(state["light_net.0.weight"], stage1["netL"]["network.0.weight"])
    assert torch.equal(state["albedo_net.encoder.0.weight"], stage1["netA"]["network.0.weight"])
    assert torch.equal(state["depth_net.decoder.0.weight"], stage1["netD"]["network.13.weight"])
    assert model.config.rdm_width is None and model.name_or_path == name

    card = model.model_card or ""
    for text in (hashlib.sha256(archive).hexdigest(), f"{server.url}/mirror/{_file_name(name)} (a mirror of "
                 f"{entry.url})", f"`{entry.member}`", entry.licence, "Stage 1 only", "latentface-official"):
        assert text in card, text
    assert _cache_files(cache) == [f"weights/{name}/{f}" for f in ("README.md", "config.json", "model.safetensors")]
    row = {r.name: r for r in list_pretrained(cache_dir=cache)}[name]
    assert row.cached and row.path == cache / "weights" / name and row.kind == "download"

    # Later loads never touch the network: offline, and with the server gone.
    server.__exit__(None, None, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = LatentFace.from_pretrained(name, cache_dir=cache)
    codes = again.encode(images)
    assert torch.equal(codes.texture, model.encode(images).texture)
    with torch.no_grad():
        view = again.render(codes)
    assert view.image is not None and view.image.shape == images.shape
    needs = r"needs the Stage-2 RDM, and these weights \(" + name + r"\) have no RDM .*latentface download " \
            r"latentface-official --from diffusion_64.pth"
    with pytest.raises(WeightsError, match="disentangle " + needs):
        again.disentangle(codes)
    for protocol in ("fer", "verification"):
        with pytest.raises(WeightsError, match=needs):
            again.features(images, protocol)


@pytest.mark.parametrize("switch", ["env", "local_files_only"])
def test_not_cached_and_offline_says_how_to_get_it(switch: str, mirror, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = mirror({_file_name("unsup3d-celeba"): b"never fetched"})
    if switch == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    why = "HF_HUB_OFFLINE is set" if switch == "env" else "local_files_only=True"
    with pytest.raises(WeightsError, match=rf"not in the cache .* downloads are off \({why}\): run `latentface "
                                           r"download unsup3d-celeba`"):
        LatentFace.from_pretrained("unsup3d-celeba", cache_dir=tmp_path, local_files_only=switch != "env")
    assert server.requests == [] and not (tmp_path / "weights").exists()


def _garbage_checkpoint() -> bytes:
    return b"\x80\x02not a checkpoint"


def _wrong_networks() -> bytes:
    buffer = io.BytesIO()
    torch.save({"netA": {"network.0.weight": torch.zeros(1)}, "epoch": 30}, buffer)
    return buffer.getvalue()


MEMBER = "pretrained_celeba/checkpoint030.pth"
BAD_ARCHIVES = {
    "html-page": (lambda: b"<html><body>Moved</body></html>", r"not a valid zip archive"),
    "no-checkpoint": (lambda: _zip({"pretrained_celeba/README": b"x"}),
                      r"holds no checkpoint 'pretrained_celeba/checkpoint030.pth' "
                      r"\(it holds: pretrained_celeba/README\)"),
    "two-checkpoints": (lambda: _zip({"a/checkpoint030.pth": b"1", "b/checkpoint030.pth": b"2"}),
                        r"holds 2 candidates for the checkpoint"),
    "corrupt-member": (lambda: _zip({MEMBER: bytes(1000)}).replace(bytes(1000), b"\x01" + bytes(999)),
                       r"not a valid zip archive \(Bad CRC-32"),
    "not-a-checkpoint": (lambda: _zip({MEMBER: _garbage_checkpoint()}),
                         r"cannot read checkpoint 'pretrained_celeba/checkpoint030.pth \(in the archive\)'"),
    "other-networks": (lambda: _zip({MEMBER: _wrong_networks()}),
                       r"checkpoint030.pth \(in the archive\): has Stage-1 networks \['netA'\] but lacks"),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_unexpected_archive_is_named_and_leaves_no_cache(case: str, mirror, tmp_path: Path) -> None:
    make, match = BAD_ARCHIVES[case]
    mirror({"pretrained_celeba.zip": make()})
    with pytest.raises(DownloadError, match=rf"(?s)^unsup3d-celeba: .*{match}.*; nothing was cached$"):
        LatentFace.from_pretrained("unsup3d-celeba", cache_dir=tmp_path)
    assert _cache_files(tmp_path) == []  # the bad archive is deleted too: the next attempt downloads again
    assert [p.name for p in (tmp_path / "weights").iterdir()] == []


def test_pinned_sha256_is_checked(mirror, tmp_path: Path) -> None:
    mirror({"pretrained_celeba.zip": b"anything"})
    with pytest.raises(DownloadError, match="differs from the expected"):
        download("unsup3d-celeba", sha256="ab" * 32, cache_dir=tmp_path, progress=False)
    assert _cache_files(tmp_path) == []


@pytest.fixture(scope="module")
def rdm_checkpoint(tmp_path_factory) -> Path:
    """A ``diffusion_64.pth`` in the authors' layout (Stage 1 split into network1/2, RDM width 128)."""
    path = tmp_path_factory.mktemp("official") / "diffusion_64.pth"
    torch.save(latentface_checkpoint(official_stage1(seed=1), official_rdm(128, seed=1)), path)
    return path


def test_latentface_official_from_a_url(rdm_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        images: torch.Tensor) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(WeightsError, match=r"cannot be downloaded by name\. Get its file \(.*ryanhe312/LatentFace.*\), "
                                           r"then run `latentface download latentface-official --from FILE_OR_URL`"):
        LatentFace.from_pretrained("latentface-official", cache_dir=tmp_path)
    data = rdm_checkpoint.read_bytes()
    with FileServer({"share/diffusion_64.pth": data}) as server:
        url = f"{server.url}/share/diffusion_64.pth"
        folder = download("latentface-official", source=url, sha256=hashlib.sha256(data).hexdigest(),
                          cache_dir=tmp_path, progress=False)
    assert _cache_files(tmp_path) == [f"weights/latentface-official/{f}"
                                      for f in ("README.md", "config.json", "model.safetensors")]
    model = LatentFace.from_pretrained("latentface-official", cache_dir=tmp_path)
    assert folder == tmp_path / "weights" / "latentface-official" and model.config.rdm_width == 128
    assert model.features(images, "verification").shape == (4, model.num_features("verification"))
    card = model.model_card or ""
    assert url in card and hashlib.sha256(data).hexdigest() in card and "publishes no licence" in card


def test_cli_download_list_and_errors(rdm_checkpoint: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path / "cache")
    argv = ["download", "latentface-official", "--from", str(rdm_checkpoint), "--cache-dir", cache]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"latentface-official: {cache}/weights/latentface-official (load with")
    assert main(argv) == EXIT_OK  # cached: nothing to do
    assert main(["download", "--list", "--cache-dir", cache]) == EXIT_OK
    listed = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert listed["synthfaces-tiny"] == ["bundled", "yes"] and listed["latentface-official"] == ["file", "yes"]
    assert listed["unsup3d-celeba"] == ["download", "no"]
    assert main(["download", "unsup3d-celeba", "--from", "x.pth", "--cache-dir", cache]) == EXIT_ERROR
    assert "source= is only for entries without a URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["download", "--cache-dir", cache])
    assert usage.value.code == EXIT_USAGE and "download needs a NAME, or --list" in capsys.readouterr().err

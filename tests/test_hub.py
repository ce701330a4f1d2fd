"""Weights I/O: local round trip, strict loading, built-in names, Hub ids, and the Hub cache offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import seeded_model, tiny_config

from latentface import LatentFace, WeightsError, hub, list_pretrained
from latentface.pretrained import REGISTRY


def _save(tmp_path: Path, name: str = "weights") -> tuple[LatentFace, Path]:
    model = seeded_model(tiny_config(), seed=3)
    folder = tmp_path / name
    model.save_pretrained(folder)
    return model, folder


def test_round_trip_local_dir(tmp_path: Path, images: torch.Tensor) -> None:
    model, folder = _save(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = LatentFace.from_pretrained(folder)
    assert loaded.config == model.config and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.features(images, generator=gen()), model.features(images, generator=gen()))
    assert "library_name: latentface" in (folder / "README.md").read_text()
    # The card travels with the weights through a second save.
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "README.md").read_text() == (folder / "README.md").read_text()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_load_as_float32(tmp_path: Path, images: torch.Tensor, dtype: torch.dtype) -> None:
    model, _ = _save(tmp_path)
    model.to(dtype).save_pretrained(tmp_path / "half")
    stored = safetensors.torch.load_file(tmp_path / "half" / "model.safetensors")
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {dtype}
    loaded = LatentFace.from_pretrained(tmp_path / "half")
    assert {v.dtype for v in loaded.state_dict().values() if v.is_floating_point()} == {torch.float32}
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, stored[key].float()), key  # exactly the stored values, widened
    model.float()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    close = torch.allclose(loaded.features(images, generator=gen()), model.features(images, generator=gen()),
                           rtol=0.05, atol=0.05)
    assert close


def test_config_records_preprocessing(tmp_path: Path) -> None:
    model = seeded_model(tiny_config(preprocess={"resize_mode": "center_crop", "resample": "bicubic"}))
    model.save_pretrained(tmp_path / "w")
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["preprocess"] == {"resample": "bicubic", "resize_mode": "center_crop"}
    assert LatentFace.from_pretrained(tmp_path / "w").config.preprocess.resize_mode == "center_crop"


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.pop("light_net.0.weight"), r"missing tensors: light_net\.0\.weight"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), r"unexpected tensors: extra\.weight"),
    ],
)
def test_strict_loading_names_the_tensor(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    _, folder = _save(tmp_path)
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    edit(state)
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=match):
        LatentFace.from_pretrained(folder)


def test_misshaped_message_gives_both_shapes(tmp_path: Path) -> None:
    _, folder = _save(tmp_path)
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    state["albedo_rdm.input_proj.weight"] = torch.zeros(32, 63)
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"albedo_rdm\.input_proj\.weight \(32, 63\) != expected \(32, 64\)"):
        LatentFace.from_pretrained(folder)


def test_corrupt_or_incomplete_folders(tmp_path: Path) -> None:
    _, folder = _save(tmp_path)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read"):
        LatentFace.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="lacks model.safetensors"):
        LatentFace.from_pretrained(folder)
    _, other = _save(tmp_path, "other")
    (other / "config.json").write_text(json.dumps({"image_size": 64, "bogus": 1}))
    with pytest.raises(WeightsError, match="bogus"):
        LatentFace.from_pretrained(other)


def test_unknown_names_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not a local directory, a known name .*synthfaces-tiny.*unsup3d-celeba"):
        LatentFace.from_pretrained(str(tmp_path / "nowhere" / "deeper" / "x"))
    with pytest.raises(WeightsError, match="pins revision"):
        hub.parse_hub_id("org/model@v1", revision="v2")
    assert hub.parse_hub_id("hf-hub:org/model@abc") == ("org/model", "abc")
    assert hub.parse_hub_id("org/model", revision="main") == ("org/model", "main")


def test_builtin_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: torch.Tensor) -> None:
    model, folder = _save(tmp_path / "builtin", "demo-weights")
    (tmp_path / "builtin" / "incomplete").mkdir()
    monkeypatch.setattr(hub, "BUILTIN_DIR", tmp_path / "builtin")
    assert hub.bundled_names() == ["demo-weights"]
    rows = list_pretrained(cache_dir=tmp_path / "cache")
    assert [(r.name, r.kind, r.cached) for r in rows] == [("demo-weights", "bundled", True)] + [
        (name, entry.kind, False) for name, entry in REGISTRY.items()]
    assert rows[0].path == folder
    monkeypatch.chdir(tmp_path)  # a name, not a path relative to the working directory
    loaded = LatentFace.from_pretrained("demo-weights")
    assert torch.equal(loaded.encode(images).texture, model.encode(images).texture)


def _hub_cache(cache: Path, repo_id: str, commit: str, folder: Path, ref: str = "main") -> None:
    """Lay out a Hugging Face Hub cache by hand: blobs, refs/<ref> and a snapshot of symlinks."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / ref).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, name in enumerate(("config.json", "model.safetensors", "README.md")):
        blob = repo / "blobs" / f"{i:040d}"
        shutil.copy(folder / name, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def test_offline_load_from_hub_cache(tmp_path: Path, images: torch.Tensor) -> None:
    model, folder = _save(tmp_path)
    cache = tmp_path / "cache"
    _hub_cache(cache, "someone/latentface-tiny", "a" * 40, folder)
    torch.save(images, tmp_path / "images.pt")
    torch.save(model.encode(images).texture, tmp_path / "expected.pt")
    script = f"""
import torch
from latentface import LatentFace, WeightsError
images = torch.load({str(tmp_path / 'images.pt')!r})
expected = torch.load({str(tmp_path / 'expected.pt')!r})
for name in ("someone/latentface-tiny", "hf-hub:someone/latentface-tiny@main", "someone/latentface-tiny@{'a' * 40}"):
    m = LatentFace.from_pretrained(name, cache_dir={str(cache)!r})
    assert torch.equal(m.encode(images).texture, expected), name
try:
    LatentFace.from_pretrained("someone/not-cached", cache_dir={str(cache)!r})
except WeightsError as err:
    print("offline error:", err)
else:
    raise SystemExit("an uncached repo loaded offline")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "offline error: could not get weights 'someone/not-cached'" in result.stdout


def _edit_through_data(model: LatentFace, images: torch.Tensor) -> None:
    model.albedo_net.decoder[0].weight.data.mul_(1.01)  # no autograd version bump: the digest still sees it


def _optimizer_step(model: LatentFace, images: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    model(images).texture.sum().backward()
    optimizer.step()


def _reconfigure(model: LatentFace, images: torch.Tensor) -> None:
    model.config.sampler = "ddim"


@pytest.mark.parametrize("change", [_edit_through_data, _optimizer_step, _reconfigure])
def test_card_describes_the_model_as_it_is(tmp_path: Path, images: torch.Tensor, change) -> None:  # type: ignore[no-untyped-def]
    model = LatentFace.from_pretrained("synthfaces-tiny")
    original = model.model_card
    assert original is not None and "## Scores" in original
    model.save_pretrained(tmp_path / "same")
    assert (tmp_path / "same" / "README.md").read_text() == original  # unchanged weights keep their card
    change(model, images)
    model.save_pretrained(tmp_path / "tuned")
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert "## Scores" not in card and "SIDE" not in card  # the parent's numbers describe other weights
    assert "Derived from `synthfaces-tiny`" in card and "license: mit" in card
    assert LatentFace.from_pretrained(tmp_path / "tuned").model_card == card


def test_saving_is_byte_reproducible(tmp_path: Path) -> None:
    model = seeded_model(tiny_config(), seed=5)
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

"""`benchmarks/reconstruction.py` and `benchmarks/disentangle.py` on tiny SynthFaces data with a tiny random model."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import seeded_model, tiny_config
from torch.nn import functional as F

from latentface import LatentFace
from latentface.data.synthfaces import EXPRESSIONS, SynthFacesImages, export_synthfaces
from latentface.hub import weights_digest
from latentface.render import normals_from_depth

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FEATURES = ("raw_texture", "raw_shape", "raw_both", "identity_texture", "identity_shape", "identity_both",
            "expression_texture", "expression_shape", "expression_both", "light", "pose", "albedo_map", "normal_map",
            "true_albedo_map", "true_normal_map", "fer")
# rdm_norm_groups=8: with the default 32 groups a width-32 RDM normalises one value per group (its GroupNorms output
# their bias whatever the input, and a batch of one image is rejected by torch).
CONFIG = tiny_config(rdm_norm_groups=8)
RDM_FEATURES = {"identity_texture", "identity_shape", "identity_both", "expression_texture", "expression_shape",
                "expression_both", "fer"}


def _script(name: str) -> ModuleType:
    """A benchmark script imported as a module (its sibling `harness` importable)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--threads", "1", "--no-progress", *args],
                          capture_output=True, text=True, timeout=120)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny"
    seeded_model(CONFIG).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def stage1_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny-stage1"
    seeded_model(tiny_config(rdm_width=None, rdm_norm_groups=8)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A SynthFaces export: test split, 2 identities x 2 clips x 2 frames."""
    return export_synthfaces(tmp_path_factory.mktemp("synth") / "out", identities=2, clips_per_identity=2, frames=2,
                             splits=("test",), seed=3)




# ----------------------------------------------------------------------------------------------- reconstruction


def test_reconstruction_end_to_end(weights: Path, tmp_path: Path) -> None:
    output = tmp_path / "rec.json"
    proc = _run("reconstruction", "--weights", str(weights), "--identities", "4", "--samples-per-identity", "2",
                "--seed", "1", "--batch-size", "3", "--output", str(output))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| method | SIDE (x10^-2) | MAD (deg) | relief |" in proc.stdout
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["benchmark"] == "reconstruction" and report["machine"]["cpu_model"]
    assert report["settings"]["data"] == {"source": "synthfaces", "split": "test", "identities": 4,
                                          "samples_per_identity": 2, "seed": 1, "size": 64}
    assert report["settings"]["gt_mask"] == "face_mask" and report["settings"]["renormalize_normals"] is False
    assert report["num_images"] == 8 and report["total_seconds"] > 0
    assert _finite(report["timing"]["model_seconds"])
    results = report["results"]
    assert set(results) == {"model", "mean_depth", "constant_depth", "pose_light"}
    fits = results.pop("pose_light")
    assert set(fits) == {"yaw", "pitch", "roll", "ambient", "diffuse", "light_x", "light_y"}
    assert all(fit["count"] == 8 and _finite(fit["slope"]) and -1 <= fit["r"] <= 1 for fit in fits.values())
    for method, row in results.items():
        for metric in ("side", "mad", "relief", "normal_slope"):
            summary = row[metric]
            assert _finite(summary["mean"]) and _finite(summary["std"]), (method, metric)
            assert summary["count"] == 8 and summary["excluded"] == 0
        assert row["pixels_per_image"] > 100
    assert results["mean_depth"]["side"]["mean"] > 0 and results["constant_depth"]["side"]["mean"] > 0
    assert 0 < results["model"]["mask_coverage"] <= 1
    assert report["model"]["weights_sha256"] == weights_digest(LatentFace.from_pretrained(weights))


def test_reconstruction_scores_ground_truth_as_zero() -> None:
    rec = _script("reconstruction")
    batch = SynthFacesImages(2, 1, split="test", seed=0).batch([0, 1])
    exact = rec.score_depth(batch.depth, batch.depth, batch.face_mask, batch.mask, fov=10.0)
    assert torch.equal(exact.side, torch.zeros(2)) and (exact.pixels > 100).all()
    assert torch.all(exact.mad > 0)  # Unsup3D's normals are not unit length: identical depths score > 0 degrees
    unit = rec.score_depth(batch.depth, batch.depth, batch.face_mask, fov=10.0, renormalize=True)
    assert torch.all(unit.side == 0) and torch.all(unit.mad < 0.1)
    flat = rec.score_depth(torch.ones_like(batch.depth), batch.depth, batch.face_mask, fov=10.0)
    assert torch.all(flat.side > 0) and torch.all(flat.mad > 1)
    assert torch.allclose(exact.relief, torch.ones(2)) and torch.all(flat.relief.abs() < 1e-6)
    assert torch.allclose(exact.normal_slope, torch.ones(2)) and torch.all(flat.normal_slope.abs() < 1e-6)


def test_reconstruction_reads_an_export_folder(weights: Path, export: Path, tmp_path: Path) -> None:
    output = tmp_path / "rec.json"
    proc = _run("reconstruction", "--weights", str(weights), "--data-root", str(export), "--split", "test",
                "--output", str(output))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["settings"]["data"]["source"] == "folder" and report["num_images"] == 8
    assert all(_finite(report["results"][m]["side"]["mean"]) for m in ("model", "mean_depth", "constant_depth"))


def test_reconstruction_rejects_bad_data(weights: Path, export: Path, tmp_path: Path, capsys, one_thread) -> None:
    rec = _script("reconstruction")
    out = str(tmp_path / "x.json")
    assert rec.main(["--weights", str(weights), "--data-root", str(export), "--split", "val", "--output", out]) == 2
    assert "must hold a folder per split" in capsys.readouterr().err
    broken = tmp_path / "data" / "test" / "a"
    broken.mkdir(parents=True)
    (broken / "0.png").write_bytes((export / "test/00000/000/0000.png").read_bytes())
    assert rec.main(["--weights", str(weights), "--data-root", str(tmp_path / "data"), "--output", out]) == 2
    assert "no ground-truth .npz" in capsys.readouterr().err
    np.savez(broken / "0.npz", depth=np.ones((64, 64), np.float32))
    assert rec.main(["--weights", str(weights), "--data-root", str(tmp_path / "data"), "--output", out]) == 2
    assert "lacks ['face_mask']" in capsys.readouterr().err
    assert not Path(out).exists()


@pytest.mark.parametrize("script", ["reconstruction", "disentangle"])
def test_missing_weights_is_a_clear_error(script: str, tmp_path: Path, capsys, one_thread) -> None:
    module = _script(script)
    missing = tmp_path / "nowhere"
    assert module.main(["--weights", str(missing), "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert f"cannot load weights {str(missing)!r}" in err and "--weights" in err
    assert not (tmp_path / "x.json").exists()


# -------------------------------------------------------------------------------------------------- disentangle


def test_disentangle_end_to_end(weights: Path, tmp_path: Path) -> None:
    output = tmp_path / "dis.json"
    proc = _run("disentangle", "--weights", str(weights), "--identities", "4", "--samples-per-identity", "4",
                "--clips", "2", "--frames", "4", "--probe-max-iter", "20", "--batch-size", "5", "--output", str(output))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| features | dim | retrieval top-1 |" in proc.stdout and "| latent | cosine to clip mean |" in proc.stdout
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["benchmark"] == "disentangle" and report["num_images"] == 16 and report["total_seconds"] > 0
    results = report["results"]
    assert results["skipped"] == [] and results["notes"] == []
    assert list(results["features"]) == list(FEATURES)
    assert results["features"]["fer"]["dim"] == 4 * 32 and results["features"]["light"]["dim"] == 4
    assert all(results["features"][name]["dim"] == 3 * 16 * 16 for name in FEATURES if name.endswith("_map"))
    for name, row in results["features"].items():
        assert 0 <= row["retrieval"]["top1"] <= 1 and 0 < row["retrieval"]["mean_ap"] <= 1, name
        assert row["retrieval"]["queries"] == 16
        assert 0 <= row["probe"]["accuracy"] <= 1 and _finite(row["probe"]["macro_f1"]), name
        assert len(row["probe"]["per_class_accuracy"]) == len(EXPRESSIONS)
    chance = results["chance"]
    assert chance["retrieval"]["top1"] == pytest.approx(3 / 15) and 0 < chance["retrieval"]["mean_ap"] < 1
    probe = chance["probe"]
    assert probe["uniform"] == pytest.approx(1 / 7) and 0 <= probe["majority_accuracy"] <= 1
    assert (probe["train_items"], probe["test_items"], probe["train_identities"], probe["test_identities"]) == (
        8, 8, 2, 2)
    clips = results["clips"]
    assert (clips["clips"], clips["frames"]) == (2, 4)
    assert set(clips["latents"]) == {"raw_texture", "raw_shape", "identity_texture", "identity_shape"}
    for row in clips["latents"].values():
        assert all(_finite(v) for v in row.values()) and -1 <= row["cosine_to_clip_mean"] <= 1 + 1e-9
    raw = clips["latents"]["raw_texture"]
    assert raw["distance_to_target"] == pytest.approx(raw["distance_to_clip_mean"])


def test_disentangle_holds_factors_per_identity(stage1_weights: Path, tmp_path: Path, capsys, one_thread) -> None:
    dis = _script("disentangle")
    output = tmp_path / "dis.json"
    assert dis.main(["--weights", str(stage1_weights), "--identities", "2", "--samples-per-identity", "3",
                     "--hold", "light,shift", "--clips", "0", "--probe-max-iter", "5", "--no-progress",
                     "--output", str(output)]) == 0
    assert "(light, shift held per identity)" in capsys.readouterr().out
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["settings"]["data"]["hold"] == ["light", "shift"] and report["num_images"] == 6
    with pytest.raises(SystemExit):
        dis.main(["--hold", "light,identity", "--output", str(tmp_path / "x.json")])
    assert "unknown factors ['identity']" in capsys.readouterr().err


def test_disentangle_stage1_only_skips_rdm_rows(stage1_weights: Path, tmp_path: Path, capsys, one_thread) -> None:
    dis = _script("disentangle")
    output = tmp_path / "dis.json"
    assert dis.main(["--weights", str(stage1_weights), "--identities", "2", "--samples-per-identity", "2",
                     "--clips", "1", "--frames", "2", "--probe-max-iter", "5", "--no-progress",
                     "--output", str(output)]) == 0
    assert "no RDM (Stage 1 only)" in capsys.readouterr().out
    results = json.loads(output.read_text(encoding="utf-8"))["results"]
    assert set(results["skipped"]) == RDM_FEATURES and "Stage 1 only" in results["notes"][0]
    assert set(results["features"]) == set(FEATURES) - RDM_FEATURES
    assert set(results["clips"]["latents"]) == {"raw_texture", "raw_shape"}
    assert results["chance"]["probe"]["uniform"] == pytest.approx(1 / 7)


def test_disentangle_reads_an_export_folder(weights: Path, export: Path, tmp_path: Path, one_thread) -> None:
    dis = _script("disentangle")
    output = tmp_path / "dis.json"
    assert dis.main(["--weights", str(weights), "--data-root", str(export), "--probe-max-iter", "5", "--no-progress",
                     "--output", str(output)]) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["settings"]["data"]["source"] == "folder" and report["num_images"] == 8
    assert (report["results"]["clips"]["clips"], report["results"]["clips"]["frames"]) == (4, 2)
    assert report["results"]["chance"]["retrieval"]["top1"] == pytest.approx(3 / 7)


def test_disentangle_features_match_the_model(one_thread) -> None:
    dis = _script("disentangle")
    model = seeded_model(CONFIG)
    images = SynthFacesImages(3, 2, split="test", seed=0).batch(range(6)).image
    with torch.no_grad():
        codes = model.encode(images)
    small, whole = dis.feature_sets(model, codes, 5, 2), dis.feature_sets(model, codes, 5, 6)
    assert set(small) == set(FEATURES) - set(dis.TRUE_MAPS)
    for name in small:
        torch.testing.assert_close(small[name], whole[name], rtol=1e-4, atol=1e-4)
    fer = model.features(images, protocol="fer", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(whole["fer"], fer, rtol=1e-4, atol=1e-4)
    parts = model.disentangle(codes, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(whole["identity_texture"], parts.identity.texture, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        albedo, depth = model.decode(codes)
    torch.testing.assert_close(whole["albedo_map"].view(6, 3, 16, 16), F.avg_pool2d(albedo, 4))
    normal = normals_from_depth(depth, model.config.fov).permute(0, 3, 1, 2)
    torch.testing.assert_close(whole["normal_map"].view(6, 3, 16, 16), F.avg_pool2d(normal, 4))


def test_disentangle_true_maps_are_the_ground_truth_pooled() -> None:
    dis = _script("disentangle")
    data = SynthFacesImages(2, 2, split="test", seed=3)
    labels: dict[str, list[torch.Tensor]] = {name: [] for name in ("identity", "expression", *dis.TRUE_MAPS)}
    images = torch.cat(list(dis.synth_image_batches(data, 3, labels)))
    truth = data.batch(range(4))
    torch.testing.assert_close(images, truth.image)
    torch.testing.assert_close(torch.cat(labels["true_albedo_map"]).view(4, 3, 16, 16), F.avg_pool2d(truth.albedo, 4))
    torch.testing.assert_close(torch.cat(labels["true_normal_map"]).view(4, 3, 16, 16),
                               F.avg_pool2d(truth.canonical_normal, 4))


@pytest.mark.parametrize("selection", ["identity", "stratified"])
def test_score_features_probe_selection(selection: str) -> None:
    dis = _script("disentangle")
    generator = torch.Generator().manual_seed(0)
    identity = torch.arange(16).repeat_interleave(14)
    expression = torch.arange(7).repeat(32)
    feats = {"raw_shape": torch.randn(len(identity), 8, generator=generator) + 4 * expression[:, None].float()}
    out = dis.score_features(feats, identity, expression, seed=0, progress=False, selection=selection)
    chance = out["chance"]["probe"]
    assert chance["selection"] == selection
    assert (chance["folds"], chance["val_fraction"]) == ((4, None) if selection == "identity" else (None, 0.2))
    assert out["features"]["raw_shape"]["probe"]["accuracy"] > 0.9


def test_identity_halves_and_probe_selection() -> None:
    dis = _script("disentangle")
    train, test = dis.identity_halves(torch.tensor([5, 5, 2, 2, 9, 7]))
    assert train.tolist() == [True, True, True, True, False, False] and torch.equal(test, ~train)
    assert dis.probe_val_fraction(torch.tensor([0, 1, 2])) is None
    assert dis.probe_val_fraction(torch.tensor([0, 0, 1])) == pytest.approx(0.5)
    assert dis.probe_val_fraction(torch.tensor([0] * 5 + [1])) == 0.2
    assert dis.probe_folds(torch.tensor([4, 4, 1])) == 2 and dis.probe_folds(torch.tensor([3, 3])) is None
    assert dis.probe_folds(torch.arange(32).repeat(2)) == dis.PROBE_FOLDS == 4

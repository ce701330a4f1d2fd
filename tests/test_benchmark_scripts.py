"""`benchmarks/fer.py`, `benchmarks/verification.py` and `benchmarks/tables.py` end to end on tiny fixtures in the
official layouts (SynthFaces images), with the bundled synthfaces-tiny weights and few probe epochs."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from benchmark_fixtures import make_affectnet, make_lfw, make_rafdb, make_sllfw
from PIL import Image

from latentface import LatentFace
from latentface.data.expressions import AFFECTNET_CLASSES, RAFDB_CLASSES, affectnet_thinning
from latentface.hub import weights_digest

pytestmark = pytest.mark.usefixtures("one_thread")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
EPOCHS = 3


@functools.cache
def bundled_digest() -> str:
    """`weights_digest` of the bundled weights, which the scripts measure by default."""
    return weights_digest(LatentFace.from_pretrained("synthfaces-tiny"))
CLEAN_LRS = ("1e-3", "1e-2")


def _script(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as a module named ``benchmark_<name>`` (its siblings `harness` and `feature_cache`
    importable), so it cannot clash with another module called `verification` or `tables`."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    module_name = f"benchmark_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]




def _corrupt(path: Path, how: str) -> None:
    """Replace an image by bytes that are not an image, or cut it short."""
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if how == "garbage" else data[: len(data) // 3])


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory) -> dict[str, Any]:
    """RAF-DB, 7 x 3 training and 7 x 2 test images; one training image is garbage, one test image truncated."""
    root = tmp_path_factory.mktemp("rafdb")
    images = make_rafdb(root, per_class=3, test_per_class=2, seed=1)
    bad_train = next(im.path for im in images if im.split == "train")
    bad_test = next(im.path for im in images if im.split == "test")
    _corrupt(bad_train, "garbage")
    _corrupt(bad_test, "truncate")
    return {"root": root, "train": 21, "test": 14, "bad": {"train": str(bad_train), "test": str(bad_test)}}


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory) -> dict[str, Any]:
    """AffectNet, 7 x 4 training and 7 x 2 validation rows plus unusable rows, and a head-pose list."""
    root = tmp_path_factory.mktemp("affectnet")
    fixture = make_affectnet(root, train_per_class=4, test_per_class=2, unusable=2, pose_yaw=15.0, seed=2)
    usable_train = [im.label for im in fixture.train if im.usable]
    assert len(fixture.pose_names) >= 2, "the pose list must select some test images"
    return {"root": root, "train": len(affectnet_thinning(usable_train)),
            "test": sum(im.usable for im in fixture.test), "pose_list": fixture.pose_list,
            "pose_test": len(fixture.pose_names)}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, Any]:
    """LFW and SLLFW over the same images (8 identities x 4), 10 folds of 3 + 3 pairs; one image is corrupt."""
    root = tmp_path_factory.mktemp("lfw")
    lfw = make_lfw(root, identities=8, images_per_identity=4, pairs_per_fold=3, seed=3)
    sllfw = make_sllfw(root, identities=8, images_per_identity=4, pairs_per_fold=3, seed=3)
    bad = lfw.pairs[0][0]
    _corrupt(bad, "garbage")
    out = {"root": root, "bad": str(bad)}
    for name, fixture in (("lfw", lfw), ("sllfw", sllfw)):
        out[name] = {"pairs": len(fixture.pairs), "images": len({p for a, b, _ in fixture.pairs for p in (a, b)}),
                     "dropped": sum(bad in (a, b) for a, b, _ in fixture.pairs)}
    return out


def _fer(tmp: Path, name: str, *args: str, cache: str = "cache") -> dict[str, Any]:
    output = tmp / f"{name}.json"
    code = _script("fer").main([*args, "--epochs", str(EPOCHS), "--no-progress", "--cache-dir", str(tmp / cache),
                                "--figures", str(tmp / "figures"), "--output", str(output)])
    assert code == 0
    return json.loads(output.read_text(encoding="utf-8"))


def _verification(tmp: Path, name: str, *args: str, cache: str = "cache") -> dict[str, Any]:
    output = tmp / f"{name}.json"
    code = _script("verification").main([*args, "--epochs", "4", "--pair-batch-size", "16", "--no-progress",
                                         "--cache-dir", str(tmp / cache), "--figures", str(tmp / "figures"),
                                         "--output", str(output)])
    assert code == 0
    return json.loads(output.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(rafdb, affectnet, pairs, tmp_path_factory) -> dict[str, Any]:
    """Every benchmark run of this file, done once: their reports by name, and the folder they were written to."""
    tmp = tmp_path_factory.mktemp("runs")
    out: dict[str, Any] = {"dir": tmp}
    rafdb_args = ("--dataset", "rafdb", "--data-root", str(rafdb["root"]))
    out["rafdb-released"] = _fer(tmp, "rafdb-released", *rafdb_args)
    out["rafdb-released-again"] = _fer(tmp, "rafdb-released-again", *rafdb_args)
    out["rafdb-released-fresh"] = _fer(tmp, "rafdb-released-fresh", *rafdb_args, cache="cache2")
    out["rafdb-clean"] = _fer(tmp, "rafdb-clean", *rafdb_args, "--protocol", "clean", "--lrs", *CLEAN_LRS)
    affectnet_args = ("--dataset", "affectnet", "--data-root", str(affectnet["root"]))
    out["affectnet-released"] = _fer(tmp, "affectnet-released", *affectnet_args, "--pose-list",
                                     str(affectnet["pose_list"]), "--subset", "pose-30")
    out["affectnet-clean"] = _fer(tmp, "affectnet-clean", *affectnet_args, "--protocol", "clean", "--lrs", *CLEAN_LRS)
    lfw_args = ("--dataset", "lfw", "--data-root", str(pairs["root"]))
    out["lfw"] = _verification(tmp, "lfw", *lfw_args)
    out["lfw-again"] = _verification(tmp, "lfw-again", *lfw_args)
    out["sllfw"] = _verification(tmp, "sllfw", "--dataset", "sllfw", "--data-root", str(pairs["root"]),
                                 "--released-quirk")
    return out


def _png(path: str) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def _check_classification(row: dict[str, Any], classes: int, tested: int) -> None:
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1
    assert len(row["per_class_accuracy"]) == classes
    assert all(a is None or 0 <= a <= 1 for a in row["per_class_accuracy"])
    confusion = np.array(row["confusion"])
    assert confusion.shape == (classes, classes) and confusion.sum() == tested
    assert row["accuracy"] == pytest.approx(np.trace(confusion) / tested)


# ---------------------------------------------------------------------------------------------------------- fer


@pytest.mark.parametrize("name,protocol", [("rafdb-released", "released"), ("rafdb-clean", "clean"),
                                           ("affectnet-released", "released"), ("affectnet-clean", "clean")])
def test_fer_report(runs, rafdb, affectnet, name: str, protocol: str) -> None:
    report = runs[name]
    assert report["benchmark"] == "fer" and report["settings"]["protocol"] == protocol
    assert report["machine"]["cpu_model"] and report["total_seconds"] > 0
    assert report["model"]["weights_sha256"] == bundled_digest()
    counts, data, results = report["counts"], report["data"], report["results"]
    if name.startswith("rafdb"):
        assert data["classes"] == list(RAFDB_CLASSES) and report["settings"]["probe_batch_size"] == 32
        assert (counts["train"]["listed"], counts["test"]["listed"]) == (rafdb["train"], rafdb["test"])
        assert (counts["train"]["skipped"], counts["test"]["skipped"]) == (1, 1)
        skipped = {s["split"]: s for s in report["skipped"]}
        assert {k: v["file"] for k, v in skipped.items()} == rafdb["bad"]
        assert "not an image" in skipped["train"]["reason"]
        assert skipped["test"]["reason"].startswith("corrupt or truncated")
    else:
        assert data["classes"] == list(AFFECTNET_CLASSES) and report["settings"]["probe_batch_size"] == 128
        test = affectnet["pose_test"] if protocol == "released" else affectnet["test"]
        assert (counts["train"]["listed"], counts["test"]["listed"]) == (affectnet["train"], test)
        assert counts["train"]["skipped"] == counts["test"]["skipped"] == 0 and report["skipped"] == []
        assert data["subset"] == ("pose-30" if protocol == "released" else None)
    for split in ("train", "test"):
        assert counts[split]["used"] + counts[split]["skipped"] == counts[split]["listed"]
    classes = len(data["classes"])
    _check_classification(results, classes, counts["test"]["used"])
    _check_classification(results["last_epoch"], classes, counts["test"]["used"])
    selection = results["selection"]
    assert selection["protocol"] == protocol and 1 <= selection["epoch"] <= EPOCHS
    if protocol == "released":
        assert len(results["history"]) == EPOCHS and results["last_epoch"]["selection"]["epoch"] == EPOCHS
        assert results["accuracy"] == max(h["test_accuracy"] for h in results["history"])
    else:
        assert len(results["history"]) == EPOCHS * len(CLEAN_LRS)
        assert selection["lr"] in [float(lr) for lr in CLEAN_LRS]
        assert selection["val_size"] + selection["fit_size"] == counts["train"]["used"]
    for part in ("train", "train_flip", "test"):
        assert report["extraction"][part]["rows"] == counts["test" if part == "test" else "train"]["listed"]
        assert Path(report["extraction"][part]["file"]).is_file()
    _png(report["figures"]["confusion_matrix"])


def test_fer_rerun_reuses_cached_features_and_is_deterministic(runs) -> None:
    first, again, fresh = runs["rafdb-released"], runs["rafdb-released-again"], runs["rafdb-released-fresh"]
    for part in ("train", "train_flip", "test"):
        assert first["extraction"][part]["computed_batches"] == first["extraction"][part]["batches"] >= 1
        assert not first["extraction"][part]["reused"]
        assert again["extraction"][part]["reused"] and again["extraction"][part]["computed_batches"] == 0
        assert again["extraction"][part]["file"] == first["extraction"][part]["file"]
        assert fresh["extraction"][part]["computed_batches"] == fresh["extraction"][part]["batches"]
    assert first["extraction"]["images_per_s"] > 0 and again["extraction"]["images_per_s"] is None
    assert again["results"] == first["results"] and fresh["results"] == first["results"]
    # the clean run shares the released run's cached features (same feature settings)
    assert all(runs["rafdb-clean"]["extraction"][p]["reused"] for p in ("train", "train_flip", "test"))


def test_fer_rejects_bad_arguments_and_data(tmp_path: Path, capsys) -> None:
    fer = _script("fer")
    with pytest.raises(SystemExit):
        fer.main(["--dataset", "rafdb", "--data-root", str(tmp_path), "--pose-list", "x.txt"])
    assert "--pose-list applies to --dataset affectnet only" in capsys.readouterr().err
    output = tmp_path / "x.json"
    assert fer.main(["--dataset", "rafdb", "--data-root", str(tmp_path / "nowhere"), "--output", str(output),
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "nowhere" in capsys.readouterr().err and not output.exists()
    assert fer.subset_name(Path("datasets/pose_45_affectnet_list.txt")) == "pose-45"


def test_fer_with_no_readable_test_image_is_an_error(tmp_path: Path, capsys) -> None:
    images = make_rafdb(tmp_path / "rafdb", per_class=1, test_per_class=1, seed=4)
    for im in images:
        if im.split == "test":
            _corrupt(im.path, "garbage")
    output = tmp_path / "x.json"
    code = _script("fer").main(["--dataset", "rafdb", "--data-root", str(tmp_path / "rafdb"), "--epochs", "1",
                                "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--output", str(output)])
    assert code == 2 and not output.exists()
    err = capsys.readouterr().err
    assert "too few readable images: 7 training and 0 test images (7 skipped" in err and "not an image" in err


@pytest.mark.parametrize(("script", "feature"), [("fer", "FER"), ("verification", "verification")])
def test_stage1_only_weights_are_refused(script: str, feature: str, tmp_path: Path, capsys) -> None:
    from conftest import seeded_model, tiny_config

    weights = tmp_path / "stage1"
    seeded_model(tiny_config(rdm_width=None)).save_pretrained(weights)
    dataset = "rafdb" if script == "fer" else "lfw"
    output = tmp_path / "x.json"
    code = _script(script).main(["--dataset", dataset, "--data-root", str(tmp_path), "--weights", str(weights),
                                 "--output", str(output), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and not output.exists()
    assert f"have no RDM (Stage 1 only); the {feature} feature needs Stage 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- verification


@pytest.mark.parametrize("name", ["lfw", "sllfw"])
def test_verification_report(runs, pairs, name: str) -> None:
    report = runs[name]
    quirk = name == "sllfw"
    assert report["benchmark"] == "verification" and report["settings"]["released_quirk"] is quirk
    counts, fixture = report["counts"], pairs[name]
    assert (counts["pairs_listed"], counts["images"]) == (fixture["pairs"], fixture["images"])
    assert counts["images_skipped"] == 1 and report["skipped"][0]["file"] == pairs["bad"]
    assert "not an image" in report["skipped"][0]["reason"]
    assert counts["pairs_dropped"] == fixture["dropped"] >= 1
    assert counts["pairs_used"] == fixture["pairs"] - fixture["dropped"] == sum(counts["pairs_per_fold"])
    assert report["model"]["feature_dim"] == 512
    assert report["model"]["weights_sha256"] == bundled_digest()
    assert set(report["results"]) == {"a", "b"}
    for protocol, r in report["results"].items():
        assert len(r["fold_accuracies"]) == 10
        assert all(0 <= a <= 1 for a in r["fold_accuracies"])
        assert r["mean_accuracy"] == pytest.approx(np.mean(r["fold_accuracies"]))
        assert r["std_accuracy"] == pytest.approx(np.std(r["fold_accuracies"]))
        assert 0 <= r["auc"] <= 1
        _png(report["figures"][f"roc_{protocol}"])
    assert len(report["results"]["a"]["fold_thresholds"]) == 10
    train_pairs = [counts["pairs_used"] - n for n in counts["pairs_per_fold"]]
    expected = [[16, 16]] * 10 if quirk else [[n, n] for n in train_pairs]
    assert report["results"]["b"]["samples_per_epoch"] == expected


def test_verification_rerun_reuses_cached_features_and_is_deterministic(runs) -> None:
    first, again = runs["lfw"], runs["lfw-again"]
    assert not first["extraction"]["images"]["reused"] and first["extraction"]["images_per_s"] > 0
    assert again["extraction"]["images"]["reused"] and again["extraction"]["images"]["computed_batches"] == 0
    assert again["results"] == first["results"]


# ------------------------------------------------------------------------------------------------------- tables


def _row(text: str, start: str) -> list[str]:
    """Cells of the first markdown table row whose first cell is `start`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == start:
            return cells
    raise AssertionError(f"no row {start!r} in:\n{text}")


def test_tables_from_results(runs, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("rafdb-released", "affectnet-released", "affectnet-clean", "lfw", "sllfw"):
        shutil.copy(runs["dir"] / f"{name}.json", folder / f"{name}.json")
    for name in ("reconstruction-synthfaces-tiny-final.json", "disentangle-synthfaces-tiny-final.json",
                 "speed-cpu-2core.json"):
        shutil.copy(BENCHMARKS / "results" / name, folder / name)
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    output = tmp_path / "tables.md"
    assert _script("tables").main(["--results", str(folder), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert capsys.readouterr().out.strip() == text.strip()

    released = runs["rafdb-released"]["results"]["accuracy"] * 100
    pose = runs["affectnet-released"]["results"]["accuracy"] * 100
    row = _row(text, "this library: synthfaces-tiny, released probe")
    assert row[1:] == [f"{released:.2f}", "no result yet", f"{pose:.2f}", "no result yet"]
    clean = _row(text, "this library: synthfaces-tiny, clean probe")
    assert clean[1] == "no result yet" and clean[2] == f"{runs['affectnet-clean']['results']['accuracy'] * 100:.2f}"
    assert _row(text, "FaceCycle (ICCV 2021) (reference)")[1:3] == ["71.01", "n/a"]
    facecycle = [line for line in text.splitlines() if "| RAF-DB |" in line and "FaceCycle" in line]
    assert facecycle and facecycle[0].rstrip(" |").endswith(f"{released - 71.01:+.2f}")

    def cell(name: str, protocol: str) -> str:
        r = runs[name]["results"][protocol]
        return f"{100 * r['mean_accuracy']:.2f} ± {100 * r['std_accuracy']:.2f}"

    assert _row(text, "this library: synthfaces-tiny, protocol A")[1:] == [cell("lfw", "a"), cell("sllfw", "a")]
    assert _row(text, "this library: synthfaces-tiny, protocol B")[1:] == [cell("lfw", "b"), "no result yet"]
    assert _row(text, "this library: synthfaces-tiny, protocol B (released quirk)")[1:] == [
        "no result yet", cell("sllfw", "b")]
    lfw_a = runs["lfw"]["results"]["a"]
    lfw_diff = [line for line in text.splitlines() if "| LFW |" in line and "protocol A" in line]
    assert lfw_diff[0].rstrip(" |").endswith(f"{100 * lfw_a['mean_accuracy'] - 73.72:+.2f}")

    side = json.loads((BENCHMARKS / "results" / "reconstruction-synthfaces-tiny-final.json").read_text())
    side = side["results"]["model"]["side"]
    assert f"{100 * side['mean']:.3f} ± {100 * side['std']:.3f}" in text and "Unsup3D (reference)" in text
    assert _row(text, "fer")[1:] and "broken.json" in text.split("Unreadable result files")[1]


def test_tables_without_results_invent_nothing(tmp_path: Path, capsys) -> None:
    assert _script("tables").main(["--results", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert _row(text, "this library")[1:] == ["no result yet"] * 4
    ours = [line for line in text.splitlines() if line.startswith("| this library")]
    assert ours and all(not any(ch.isdigit() for ch in line) for line in ours)
    assert "No result shares a column with a reference number yet" in text
    assert _script("tables").main(["--results", str(tmp_path / "missing")]) == 2

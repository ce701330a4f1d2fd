"""FER probes on precomputed features: metrics, the released and clean protocols, the confusion-matrix plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from latentface.eval.fer_probe import (
    classification_report,
    stratified_split,
    train_clean_probe,
    train_released_probe,
)
from latentface.eval.plots import save_confusion_matrix

pytestmark = pytest.mark.usefixtures("one_thread")

C, D = 4, 12
PROBES = {
    "released": lambda *a, **k: train_released_probe(*a, num_classes=C, epochs=4, lr=1e-2, **k),
    "clean": lambda *a, **k: train_clean_probe(*a, num_classes=C, epochs=4, lrs=(1e-3, 1e-2), **k),
}


def clusters(n: int, seed: int, spread: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """n features around C fixed class centres (the centres do not depend on `seed`), labels cycling 0..C-1."""
    centres = 3 * torch.randn(C, D, generator=torch.Generator().manual_seed(123))
    labels = torch.arange(n) % C
    return centres[labels] + spread * torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), labels


def noise(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def test_classification_report_matches_hand_computed_values() -> None:
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    labels = torch.tensor([0, 1, 2, 2, 2, 0, 0])
    report = classification_report(pred, labels, num_classes=4, selection={"epoch": 3})
    assert report.confusion.tolist() == [[2, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    assert report.accuracy == pytest.approx(5 / 7)
    # F1 per class present in labels or predictions: 2*TP / (support + predicted); class 3 is absent.
    assert report.macro_f1 == pytest.approx((4 / 5 + 2 / 3 + 4 / 6) / 3)
    assert report.per_class_accuracy[:3] == pytest.approx((2 / 3, 1.0, 2 / 3))
    assert math.isnan(report.per_class_accuracy[3])
    out = json.loads(json.dumps(report.to_dict()))
    assert out["per_class_accuracy"][3] is None and out["selection"] == {"epoch": 3}
    assert out["confusion"][2] == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("pred", "labels", "num_classes"),
    [([0, 4], [0, 1], 4), ([0, 1], [0, -1], 4), ([0, 1], [0], 4), ([], [], 4)],
)
def test_classification_report_rejects_bad_input(pred: list[int], labels: list[int], num_classes: int) -> None:
    with pytest.raises(ValueError):
        classification_report(torch.tensor(pred, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                              num_classes)


@pytest.mark.parametrize("name", PROBES)
def test_separable_features_are_classified_perfectly(name: str) -> None:
    x, y = clusters(160, seed=0)
    x_test, y_test = clusters(80, seed=1)
    result = PROBES[name](x, x + 0.05 * noise(160, 2), y, x_test, y_test)
    assert result.report.accuracy == 1.0
    assert result.report.macro_f1 == 1.0
    assert torch.equal(result.report.confusion, torch.diag(torch.bincount(y_test, minlength=C)))


@pytest.mark.parametrize("name", PROBES)
def test_random_features_give_about_chance(name: str) -> None:
    y = torch.arange(160) % C
    y_test = torch.randint(0, C, (400,), generator=torch.Generator().manual_seed(5))
    result = PROBES[name](noise(160, 3), noise(160, 4), y, noise(400, 6), y_test)
    assert 0.15 < result.report.accuracy < 0.37  # chance is 0.25; 400 test items give a std of about 0.02


@pytest.mark.parametrize("name", PROBES)
def test_probes_are_deterministic_given_the_seed(name: str) -> None:
    x, y = clusters(96, seed=7, spread=3.0)  # overlapping classes, so runs are not all 100%
    x_test, y_test = clusters(48, seed=8, spread=3.0)
    flips = x + noise(96, 9)
    first = PROBES[name](x, flips, y, x_test, y_test, seed=11).to_dict()
    again = PROBES[name](x, flips, y, x_test, y_test, seed=11).to_dict()
    other = PROBES[name](x, flips, y, x_test, y_test, seed=12).to_dict()
    assert first == again
    assert first["history"] != other["history"]


def test_released_probe_reports_best_test_epoch_and_last_epoch() -> None:
    x, y = clusters(96, seed=10, spread=3.0)
    x_test, y_test = clusters(60, seed=11, spread=3.0)
    result = train_released_probe(x, None, y, x_test, y_test, num_classes=C, epochs=6, lr=3e-2, batch_size=16)
    curve = [h["test_accuracy"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, 7))
    assert result.report.accuracy == max(curve)
    assert result.report.selection["epoch"] == curve.index(max(curve)) + 1  # ties go to the earlier epoch
    assert result.last_epoch.accuracy == curve[-1]
    assert result.last_epoch.selection["epoch"] == 6


def test_released_probe_trains_on_the_flipped_features_half_the_time() -> None:
    # The unflipped training features are pure noise; only the "flip" features carry the class.
    x_test, y_test = clusters(80, seed=13)
    x_flip, y = clusters(160, seed=12)
    with_flip = train_released_probe(noise(160, 14), x_flip, y, x_test, y_test, num_classes=C, epochs=8, lr=1e-2)
    without = train_released_probe(noise(160, 14), None, y, x_test, y_test, num_classes=C, epochs=8, lr=1e-2)
    assert with_flip.report.accuracy > 0.9
    assert without.last_epoch.accuracy < 0.5


def test_clean_probe_never_reads_test_data_for_selection() -> None:
    x, y = clusters(120, seed=15, spread=3.0)
    x_test, y_test = clusters(60, seed=16, spread=3.0)
    permuted = y_test[torch.randperm(len(y_test), generator=torch.Generator().manual_seed(0))]
    runs = [
        train_clean_probe(x, None, y, feats, labels, num_classes=C, epochs=5, lrs=(1e-3, 1e-2, 1e-1))
        for feats, labels in ((x_test, y_test), (x_test, permuted), (noise(60, 17), y_test))
    ]
    assert runs[0].report.accuracy != runs[1].report.accuracy  # the test labels do matter to the score...
    for run in runs[1:]:  # ...but not to what is selected
        assert run.report.selection == runs[0].report.selection
        assert run.history == runs[0].history
    best = max(runs[0].history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert (runs[0].report.selection["lr"], runs[0].report.selection["epoch"]) == (best["lr"], best["epoch"])
    assert len(runs[0].history) == 3 * 5
    final = [h for h in runs[0].history if h["lr"] == best["lr"]][-1]
    assert runs[0].last_epoch.selection["epoch"] == 5
    assert runs[0].last_epoch.selection["val_accuracy"] == final["val_accuracy"]


def test_stratified_split_holds_out_every_class_and_is_seeded() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3])
    fit, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(torch.cat([fit, val]).tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[val], minlength=4).tolist() == [2, 1, 1, 0]
    assert torch.equal(val, stratified_split(labels, 0.2, seed=0)[1])
    assert not torch.equal(val, stratified_split(labels, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0, seed=0)


@pytest.mark.parametrize("name", PROBES)
def test_probes_reject_mismatched_inputs(name: str) -> None:
    x, y = clusters(16, seed=0)
    with pytest.raises(ValueError, match="train_flip_feats"):
        PROBES[name](x, x[:8], y, x, y)
    with pytest.raises(ValueError, match="test_labels"):
        PROBES[name](x, None, y, x, y + C)
    with pytest.raises(ValueError, match="sizes differ"):
        PROBES[name](x, None, y, x[:, :5], y)


def test_device_argument_is_used() -> None:
    x, y = clusters(32, seed=0)
    with pytest.raises((RuntimeError, NotImplementedError)):  # the meta device cannot produce numbers
        train_released_probe(x, None, y, x, y, num_classes=C, epochs=1, device="meta")
    cpu = train_released_probe(x, None, y, x, y, num_classes=C, epochs=2, device=torch.device("cpu"))
    assert cpu.to_dict() == train_released_probe(x, None, y, x, y, num_classes=C, epochs=2).to_dict()


def test_confusion_matrix_plot_is_a_png_with_shaded_cells(tmp_path) -> None:
    dark = (8, 48, 107)
    names = ["Surprise", "Fear", "Disgust"]
    counts = {}
    for name, matrix in (("diagonal", 5 * torch.eye(3, dtype=torch.long)), ("empty", torch.zeros(3, 3))):
        path = save_confusion_matrix(tmp_path / f"{name}.png", matrix, names, title="test")
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 150 and image.height > 150
            counts[name] = int((np.asarray(image.convert("RGB")) == dark).all(axis=2).sum())
    assert counts["diagonal"] > 3 * 40 * 40  # three full-row cells in the darkest colour
    assert counts["empty"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diagonal.png", "empty.png"]  # no temporary files left
    with pytest.raises(ValueError, match=".png"):
        save_confusion_matrix(tmp_path / "x.jpg", torch.eye(3), names)
    with pytest.raises(ValueError, match="class names"):
        save_confusion_matrix(tmp_path / "x.png", torch.eye(3), names[:2])


def test_seeded_linear_leaves_the_global_rng_alone() -> None:
    from latentface.eval.heads import seeded_linear

    state = torch.get_rng_state()
    a = seeded_linear(8, 3, bias=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    b = seeded_linear(8, 3, bias=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)

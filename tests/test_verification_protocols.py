"""Verification protocols on pair features (cosine threshold, pair classifier), ROC/AUC and the ROC plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from latentface.eval.plots import save_roc_curve
from latentface.eval.verification import (
    auc,
    cosine_threshold_protocol,
    pair_classifier_protocol,
    released_folds,
    roc_curve,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D = 8


def pairs(n: int, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (f1, f2, same): same pairs share an identity vector up to `noise`; other pairs are unrelated."""
    g = torch.Generator().manual_seed(seed)
    same = torch.arange(n) % 2
    identity = torch.randn(n, D, generator=g)
    f1 = identity + noise * torch.randn(n, D, generator=g)
    partner = torch.where(same[:, None].bool(), identity, torch.randn(n, D, generator=g))
    return f1, partner + noise * torch.randn(n, D, generator=g), same


def unit_pairs(cosines: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """2-d pairs whose cosine similarities are `cosines` (f1 = e1, f2 at the matching angle)."""
    c = torch.tensor(cosines, dtype=torch.float64)
    f1 = torch.zeros(len(c), 2, dtype=torch.float64)
    f1[:, 0] = 1
    return f1, torch.stack([c, (1 - c**2).sqrt()], dim=1)


def run(protocol: str, f1, f2, same, fold, **kwargs):
    if protocol == "cosine":
        return cosine_threshold_protocol(f1, f2, same, fold)
    return pair_classifier_protocol(f1, f2, same, fold, released_quirk=protocol == "quirk", **kwargs)


def test_released_folds_are_contiguous_blocks_as_the_official_kfold() -> None:
    assert released_folds(10, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    folds = released_folds()
    assert torch.equal(folds, torch.arange(6000) // 600)


def test_numpy_labels_and_folds_are_accepted() -> None:
    f1, f2, same = pairs(100, seed=5, noise=0.5)
    folds = released_folds(100)
    as_numpy = cosine_threshold_protocol(f1, f2, same.numpy().astype(bool), folds.numpy())
    assert as_numpy.to_dict() == cosine_threshold_protocol(f1, f2, same, folds).to_dict()


def test_cosine_thresholds_on_a_constructed_case() -> None:
    # 10 folds of 4 pairs: same pairs at cosine 0.8, different pairs at 0.2, except one same pair at 0.5 in fold 3.
    cosines = [0.8, 0.2, 0.8, 0.2] * 10
    cosines[3 * 4] = 0.5
    f1, f2 = unit_pairs(cosines)
    same = torch.tensor([1, 0, 1, 0] * 10)
    report = cosine_threshold_protocol(f1, f2, same, released_folds(40, 10))
    # Training folds that hold the 0.5 pair separate perfectly for thresholds in [0.2, 0.5); the last (largest)
    # grid value of the sweep wins ties, 0.495. Fold 3 trains without it: [0.2, 0.8) -> 0.795, and misses it.
    expected = [0.495] * 10
    expected[3] = 0.795
    assert report.fold_thresholds == pytest.approx(expected, abs=1e-9)
    assert report.fold_accuracies == pytest.approx([1.0, 1.0, 1.0, 0.75] + [1.0] * 6)
    assert report.mean_accuracy == pytest.approx(0.975)
    assert report.std_accuracy == pytest.approx(np.std([1.0] * 9 + [0.75]))
    assert report.auc == pytest.approx(1.0)  # one same pair at 0.5 still ranks above every different pair


@pytest.mark.parametrize("protocol", ["cosine", "quirk", "full"])
def test_separable_pairs_are_verified_perfectly(protocol: str) -> None:
    # Same pairs: f2 = f1 (|f1 - f2| = 0); different pairs: f2 = -f1 (|f1 + f2| = 0).
    f1 = torch.randn(200, D, generator=torch.Generator().manual_seed(0))
    same = torch.arange(200) % 2
    f2 = torch.where(same[:, None].bool(), f1, -f1)
    report = run(protocol, f1, f2, same, released_folds(200), epochs=40, lr=1e-2, batch_size=32)
    assert report.fold_accuracies == (1.0,) * 10
    assert report.mean_accuracy == 1.0 and report.std_accuracy == 0.0
    assert report.auc == 1.0


@pytest.mark.parametrize("protocol", ["cosine", "quirk", "full"])
def test_random_pairs_give_about_chance(protocol: str) -> None:
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(400, D, generator=g), torch.randn(400, D, generator=g)
    same = torch.randint(0, 2, (400,), generator=g)
    report = run(protocol, f1, f2, same, released_folds(400), epochs=20, lr=1e-2, batch_size=32)
    assert 0.38 < report.mean_accuracy < 0.62  # chance is 0.5; 400 pairs give a std of 0.025
    assert 0.38 < report.auc < 0.62


@pytest.mark.parametrize(("quirk", "batch_size"), [(True, 128), (True, 50), (False, 128), (False, 50)])
def test_samples_seen_per_epoch(monkeypatch, quirk: bool, batch_size: int) -> None:
    steps = []
    step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    f1, f2, same = pairs(300, seed=2, noise=0.5)
    report = pair_classifier_protocol(f1, f2, same, released_folds(300), released_quirk=quirk, epochs=3,
                                      batch_size=batch_size)
    train_pairs = 300 - 30
    per_epoch = batch_size if quirk else train_pairs
    assert report.samples_per_epoch == ((per_epoch,) * 3,) * 10
    steps_per_epoch = 1 if quirk else math.ceil(train_pairs / batch_size)
    assert len(steps) == 10 * 3 * steps_per_epoch
    assert json.loads(json.dumps(report.to_dict()))["samples_per_epoch"] == [[per_epoch, per_epoch]] * 10


def test_pair_classifier_is_deterministic_given_the_seed() -> None:
    f1, f2, same = pairs(200, seed=3, noise=1.0)
    folds = released_folds(200)
    first = pair_classifier_protocol(f1, f2, same, folds, epochs=5, seed=7)
    again = pair_classifier_protocol(f1, f2, same, folds, epochs=5, seed=7)
    other = pair_classifier_protocol(f1, f2, same, folds, epochs=5, seed=8)
    assert torch.equal(first.scores, again.scores) and first.to_dict() == again.to_dict()
    assert not torch.equal(first.scores, other.scores)
    quirk = pair_classifier_protocol(f1, f2, same, folds, epochs=5, seed=7, released_quirk=True)
    assert quirk.protocol == "pair-classifier-released" and not torch.equal(first.scores, quirk.scores)


def test_report_to_dict_is_json() -> None:
    f1, f2, same = pairs(100, seed=4, noise=0.5)
    out = json.loads(json.dumps(cosine_threshold_protocol(f1, f2, same, released_folds(100)).to_dict()))
    assert out["protocol"] == "cosine-threshold" and len(out["fold_thresholds"]) == 10
    assert out["mean_accuracy"] == pytest.approx(np.mean(out["fold_accuracies"]))


@pytest.mark.parametrize(
    ("same", "fold", "match"),
    [([0, 2, 1, 0], [0, 0, 1, 1], "0/1"), ([0, 1, 1, 0], [0, 0, 0, 0], "two distinct"), ([0, 1], [0, 1], r"\(4,\)")],
)
def test_protocols_reject_bad_labels_and_folds(same: list[int], fold: list[int], match: str) -> None:
    f = torch.randn(4, D)
    for protocol in (cosine_threshold_protocol, pair_classifier_protocol):
        with pytest.raises(ValueError, match=match):
            protocol(f, f, torch.tensor(same), torch.tensor(fold))


def test_roc_curve_on_a_hand_computed_case() -> None:
    fpr, tpr, thresholds = roc_curve(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds[0] == math.inf
    assert thresholds[1:].tolist() == pytest.approx([0.8, 0.4, 0.35, 0.1])
    assert auc(fpr, tpr) == pytest.approx(0.75)


@pytest.mark.parametrize(("order", "expected"), [("perfect", 1.0), ("reversed", 0.0), ("tied", 0.5)])
def test_auc_of_ordered_scores(order: str, expected: float) -> None:
    same = torch.tensor([1, 1, 1, 0, 0, 0, 0])
    scores = {"perfect": same.double(), "reversed": 1 - same.double(), "tied": torch.zeros(7)}[order]
    assert auc(*roc_curve(scores, same)[:2]) == pytest.approx(expected)


def test_auc_of_random_scores_is_about_half() -> None:
    g = torch.Generator().manual_seed(9)
    value = auc(*roc_curve(torch.rand(4000, generator=g), torch.randint(0, 2, (4000,), generator=g))[:2])
    assert abs(value - 0.5) < 0.03  # std of the AUC at n = 4000 is about 0.009


def test_roc_rejects_a_single_class() -> None:
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_curve(torch.rand(5), torch.ones(5))
    with pytest.raises(ValueError, match="non-decreasing"):
        auc(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 1.0]))


def test_roc_plot_is_a_png_that_follows_the_curve(tmp_path) -> None:
    curve_colour = (31, 119, 180)
    top_left = {}
    for name, (fpr, tpr) in {"perfect": ([0, 0, 1], [0, 1, 1]), "reversed": ([0, 1, 1], [0, 0, 1])}.items():
        path = save_roc_curve(tmp_path / f"{name}.png", torch.tensor(fpr, dtype=torch.float64),
                              torch.tensor(tpr, dtype=torch.float64), f"{name}, AUC 1.000")
        with Image.open(path) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image.convert("RGB"))
        h, w, _ = pixels.shape
        # The top tenth of the figure, right tenth excluded: a perfect curve runs along the top of the plot.
        region = pixels[: h // 10, : w - w // 10]
        top_left[name] = int((region == curve_colour).all(axis=2).sum())
    assert top_left["perfect"] > 100
    assert top_left["reversed"] == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_roc_curve(tmp_path / "bad.png", torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]), "bad")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_agree_with_scikit_learn(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 40, (500,), generator=g).double() / 40  # few distinct values: many ties
    same = (torch.rand(500, generator=g) < 0.3 + 0.4 * scores).long()
    fpr, tpr, thresholds = roc_curve(scores, same)
    ref_fpr, ref_tpr, ref_thresholds = metrics.roc_curve(same.numpy(), scores.numpy(), drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr.numpy(), ref_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thresholds.numpy(), ref_thresholds)
    assert auc(fpr, tpr) == pytest.approx(metrics.roc_auc_score(same.numpy(), scores.numpy()), abs=1e-12)


def test_protocol_auc_agrees_with_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    f1, f2, same = pairs(200, seed=5, noise=1.5)
    fold = torch.arange(200) % 10
    reports = cosine_threshold_protocol(f1, f2, same, fold), pair_classifier_protocol(f1, f2, same, fold, epochs=20)
    for report in reports:
        expected = metrics.roc_auc_score(same.numpy(), report.scores.double().numpy())
        assert report.auc == pytest.approx(expected, abs=1e-12)

"""latentface.eval: Unsup3D's SIDE / MAD with baselines, identity retrieval, the linear probe, their chance levels and
clip invariance, on known cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from latentface.eval import (
    angular_error,
    clip_invariance,
    constant_depth_baseline,
    depth_metrics,
    erode_mask,
    evaluation_mask,
    foreground_mask,
    identity_retrieval,
    linear_probe,
    mad,
    mean_depth_baseline,
    mean_gt_depth,
    normal_slope,
    probe_chance,
    relief,
    retrieval_chance,
    side,
    summarize,
    summarize_depth_metrics,
)
from latentface.render import backproject, normals_from_depth

S = 32
FOV = 10.0


def face_like_depth(batch: int = 2, size: int = S, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A bump (nearer in the middle) in front of a background plane at 1.1, different per image."""
    v, u = torch.meshgrid(
        torch.linspace(-1, 1, size, dtype=dtype), torch.linspace(-1, 1, size, dtype=dtype), indexing="ij"
    )
    depths = []
    for b in range(batch):
        r2 = (u / (0.6 + 0.05 * b)) ** 2 + (v / 0.7) ** 2
        depths.append(torch.where(r2 < 1, 1.1 - 0.15 * (1 - r2).sqrt(), torch.full_like(u, 1.1)))
    return torch.stack(depths)


def tilted_plane(theta_deg: float, size: int = S) -> torch.Tensor:
    """Depth (1, H, W) of the plane through (0, 0, 1) whose normal is (0, 0, 1) turned by theta about the y axis."""
    rays = backproject(torch.ones(1, size, size, dtype=torch.float64), FOV)  # (x/z, y/z, 1)
    return 1.0 / (1.0 + math.tan(math.radians(theta_deg)) * rays[..., 0])


# ---------------------------------------------------------------- depth metrics


def test_perfect_prediction_scores_zero() -> None:
    gt = face_like_depth()
    metrics = depth_metrics(gt.clone(), gt, fov=FOV, renormalize=True)
    assert torch.equal(metrics.side, torch.zeros(2, dtype=gt.dtype))
    assert metrics.mad.abs().max() < 1e-5
    assert torch.equal(metrics.mae, torch.zeros(2, dtype=gt.dtype))
    assert (metrics.pixels > 0).all()


def test_official_mad_of_a_perfect_prediction_is_the_normalisation_floor() -> None:
    """Unsup3D does not renormalise: its normals are |n| < 1 (epsilon 1e-7), so acos(|n|^2) is the floor."""
    size = 64
    gt = torch.ones(1, size, size)
    mask = torch.ones(1, size, size, dtype=torch.bool)
    normal = normals_from_depth(gt, FOV)
    floor = torch.rad2deg(torch.acos(normal[0, size // 2, size // 2].square().sum()))
    assert 6.0 < float(floor) < 7.0  # about 6.5 degrees at 64 px
    assert torch.allclose(mad(gt.clone(), gt, mask, fov=FOV), floor[None], atol=1e-3)
    assert mad(gt.clone(), gt, mask, fov=FOV, renormalize=True).abs().max() < 0.05
    unit = torch.nn.functional.normalize(normal.double(), dim=-1)
    assert mad(gt, gt, mask, pred_normal=unit, gt_normal=unit).abs().max() < 1e-5


@pytest.mark.parametrize("scale", [0.5, 1.3, 4.0])
def test_scaled_depth_has_zero_side_but_nonzero_mae(scale: float) -> None:
    gt = face_like_depth()
    metrics = depth_metrics(gt * scale, gt, fov=FOV, renormalize=True)
    assert metrics.side.abs().max() < 1e-7
    assert metrics.mad.abs().max() < 1e-4  # scaling every point about the camera keeps the normals
    mask = evaluation_mask(gt)
    expected_mae = abs(scale - 1) * (gt * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    assert torch.allclose(metrics.mae, expected_mae)
    assert (metrics.mae > 0).all() and (metrics.mse > 0).all()
    assert torch.allclose(metrics.relief, torch.full((2,), scale, dtype=gt.dtype))  # scaled about the camera


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.21, 2.0])
def test_relief_is_the_scale_of_the_depth_about_its_mean(scale: float) -> None:
    gt = face_like_depth()
    mask = evaluation_mask(gt)
    mean = (gt * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    deeper = mean[:, None, None] + scale * (gt - mean[:, None, None]) + 0.03  # relief scaled, then shifted
    assert torch.allclose(relief(deeper, gt), torch.full((2,), scale, dtype=gt.dtype))
    assert torch.allclose(depth_metrics(deeper, gt, fov=FOV).relief, relief(deeper, gt))


def test_relief_matches_a_least_squares_line_fit() -> None:
    gt = face_like_depth(batch=3)
    noisy = gt + 0.02 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0), dtype=gt.dtype)
    pred = 1.0 + 0.7 * (noisy - 1.0)
    mask = evaluation_mask(gt)
    for b in range(3):
        x, y = gt[b][mask[b]].numpy(), pred[b][mask[b]].numpy()
        slope = np.polyfit(x, y, 1)[0]
        assert math.isclose(float(relief(pred, gt)[b]), float(slope), rel_tol=1e-9)


def test_normal_slope_is_one_for_the_truth_and_falls_for_a_flattened_surface() -> None:
    gt = face_like_depth()
    assert torch.allclose(normal_slope(gt, gt, fov=FOV), torch.ones(2, dtype=gt.dtype))
    mask = evaluation_mask(gt)
    mean = (gt * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    flatter = mean[:, None, None] + 0.5 * (gt - mean[:, None, None])  # half the relief: normals turn away less
    slopes = normal_slope(flatter, gt, fov=FOV)
    assert torch.all((slopes > 0.1) & (slopes < 0.9))
    assert torch.allclose(depth_metrics(flatter, gt, fov=FOV).normal_slope, slopes)
    plane = normal_slope(torch.full_like(gt, 1.0), gt, fov=FOV)  # one normal everywhere: no slope
    assert torch.all(plane.abs() < 1e-9)


def test_normal_slope_matches_a_least_squares_fit_of_the_normals_z() -> None:
    gt = face_like_depth(batch=3)
    pred = gt + 0.01 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1), dtype=gt.dtype)
    mask = evaluation_mask(gt)
    nz_pred, nz_gt = normals_from_depth(pred, FOV)[..., 2], normals_from_depth(gt, FOV)[..., 2]
    for b in range(3):
        slope = np.polyfit(nz_gt[b][mask[b]].numpy(), nz_pred[b][mask[b]].numpy(), 1)[0]
        assert math.isclose(float(normal_slope(pred, gt, fov=FOV)[b]), float(slope), rel_tol=1e-9)


def test_relief_of_a_flat_ground_truth_is_nan() -> None:
    gt = face_like_depth()
    mask = torch.ones_like(gt, dtype=torch.bool)
    flat = torch.full_like(gt, 1.05)
    assert relief(gt, flat, mask).isnan().all()


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.2), (-0.1, 0.3), (0.05, 0.05)])
def test_side_of_two_log_offsets_on_halves_is_half_their_gap(a: float, b: float) -> None:
    gt = torch.full((1, S, S), 1.05, dtype=torch.float64)
    offset = torch.full_like(gt, a)
    offset[..., S // 2 :] = b
    mask = torch.ones_like(gt, dtype=torch.bool)
    assert math.isclose(float(side(gt * offset.exp(), gt, mask, erode=False)), abs(a - b) / 2, abs_tol=1e-12)
    # eroded, the mask keeps (S-2) rows and S/2-1 columns on each side: still two equal halves
    assert math.isclose(float(side(gt * offset.exp(), gt, mask)), abs(a - b) / 2, abs_tol=1e-12)


@pytest.mark.parametrize("theta", [5.0, 20.0, 45.0])
def test_mad_of_tilted_plane_against_flat_plane_is_the_tilt(theta: float) -> None:
    flat = torch.ones(1, S, S, dtype=torch.float64)
    mask = torch.ones_like(flat, dtype=torch.bool)  # a constant GT has no "nearer than the max" foreground
    value = mad(tilted_plane(theta), flat, mask, fov=FOV, renormalize=True)
    assert math.isclose(float(value), theta, abs_tol=1e-6)
    # per pixel: exact away from the one-pixel border, where normals_from_depth pads with (0, 0, 1)
    errors = angular_error(
        normals_from_depth(tilted_plane(theta), FOV), normals_from_depth(flat, FOV), renormalize=True
    )
    assert torch.allclose(errors[0, 1:-1, 1:-1], torch.full((S - 2, S - 2), theta, dtype=torch.float64), atol=1e-6)
    assert errors[0, 0].abs().max() < 1e-6


def test_erosion_removes_one_pixel_ring() -> None:
    mask = torch.zeros(1, S, S, dtype=torch.bool)
    mask[0, 5:15, 8:20] = True  # 10 x 12 block
    eroded = erode_mask(mask)
    assert int(eroded.sum()) == 8 * 10
    assert eroded[0, 6:14, 9:19].all()
    full = erode_mask(torch.ones(1, S, S, dtype=torch.bool))  # the image border counts as outside
    assert int(full.sum()) == (S - 2) ** 2
    assert not full[0, 0].any() and not full[0, :, -1].any()


def test_evaluation_mask_intersects_eroded_gt_foreground_and_prediction_mask() -> None:
    gt = torch.full((1, S, S), 1.1)
    gt[0, 4:20, 4:20] = 1.0  # 16 x 16 foreground
    assert int(foreground_mask(gt).sum()) == 16 * 16
    pred_valid = torch.zeros(1, S, S, dtype=torch.bool)
    pred_valid[0, :, 10:] = True
    mask = evaluation_mask(gt, pred_mask=pred_valid)
    assert int(mask.sum()) == 14 * (19 - 11)  # rows 5..18, columns 11..18
    assert int(evaluation_mask(gt, pred_mask=pred_valid, erode=False).sum()) == 16 * 10
    explicit = torch.zeros(1, S, S, dtype=torch.bool)
    explicit[0, 0:8, 0:8] = True
    assert int(evaluation_mask(gt, gt_mask=explicit).sum()) == 6 * 6


def test_empty_mask_gives_nan_with_a_warning_and_is_left_out_of_the_summary() -> None:
    gt = face_like_depth(batch=3, dtype=torch.float32)
    gt[1] = 1.1  # no foreground
    with pytest.warns(RuntimeWarning, match="1 image"):
        metrics = depth_metrics(gt * 1.2, gt, fov=FOV)
    assert int(metrics.pixels[1]) == 0
    for values in (metrics.side, metrics.mad, metrics.mae, metrics.mse, metrics.relief, metrics.normal_slope):
        assert math.isnan(float(values[1])) and not values[[0, 2]].isnan().any()
    with pytest.warns(RuntimeWarning):
        assert side(gt, gt)[1].isnan()
    summary = summarize(metrics.mae)
    assert (summary.count, summary.excluded) == (2, 1)
    assert math.isclose(summary.mean, float(metrics.mae[[0, 2]].double().mean()), rel_tol=1e-9)


def test_summaries_are_mean_and_unbiased_std_over_images() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 7.0])
    summary = summarize([values[:3], values[3:]])
    assert (summary.mean, summary.count, summary.excluded) == (3.5, 4, 0)
    assert math.isclose(summary.std, float(values.std()), rel_tol=1e-7)
    gt = face_like_depth(batch=4)
    batches = [depth_metrics(gt[:2] * 1.1, gt[:2], fov=FOV), depth_metrics(gt[2:] + 0.01, gt[2:], fov=FOV)]
    table = summarize_depth_metrics(batches)
    assert set(table) == {"side", "mad", "mae", "mse", "relief", "normal_slope"}
    assert table["mae"].count == 4
    assert math.isclose(table["mae"].mean, float(torch.cat([b.mae for b in batches]).mean()), rel_tol=1e-9)


def test_constant_depth_baseline_side_does_not_depend_on_the_plane() -> None:
    gt = face_like_depth()
    near, far = constant_depth_baseline(gt, 0.8), constant_depth_baseline(gt, 1.3)
    assert near.shape == gt.shape and (near == 0.8).all()
    assert torch.allclose(side(near, gt), side(far, gt), atol=1e-12)
    assert (side(near, gt) > 0).all()
    assert torch.allclose(mad(near, gt, renormalize=True), mad(far, gt, renormalize=True), atol=1e-6)


def test_mean_depth_baseline() -> None:
    gt = face_like_depth(batch=5)
    mean = mean_gt_depth(gt)
    assert mean.shape == (S, S) and mean.dtype == gt.dtype
    assert torch.allclose(mean, gt.mean(0))
    assert torch.allclose(mean_gt_depth(iter([gt[:2], gt[2:]])), mean)
    prediction = mean_depth_baseline(gt, mean)
    assert prediction.shape == gt.shape and torch.equal(prediction[3], mean)
    same = gt[:1].expand(3, S, S)
    baseline = mean_depth_baseline(same, mean_gt_depth(same))
    assert depth_metrics(baseline, same, renormalize=True).side.abs().max() < 1e-12
    with pytest.raises(ValueError):
        mean_depth_baseline(gt, mean[:-1])


def test_invalid_inputs_raise() -> None:
    gt = face_like_depth()
    with pytest.raises(ValueError, match="one shape"):
        side(gt[:, :-1], gt)
    with pytest.raises(ValueError, match="positive"):
        side(gt - 2.0, gt)
    with pytest.raises(ValueError, match="one shape"):
        evaluation_mask(gt, gt_mask=torch.ones(2, S, S + 1, dtype=torch.bool))


# ---------------------------------------------------------------- retrieval


def brute_force_retrieval(
    features: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None
) -> tuple[float, float, int]:
    """Reference: loop over queries, full sort (no ties in random features)."""
    f = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    lab = labels.numpy()
    top, aps = [], []
    for i in range(len(lab)):
        cand = np.arange(len(lab)) != i
        if groups is not None:
            cand &= groups.numpy() != groups.numpy()[i]
        idx = np.nonzero(cand)[0]
        hits = lab[idx[np.argsort(-(f[idx] @ f[i]), kind="stable")]] == lab[i]
        if hits.any():
            ranks = np.nonzero(hits)[0] + 1
            top.append(hits[0])
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(top)), float(np.mean(aps)), len(top)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_perfectly_clustered_features_retrieve_perfectly(chunk_size: int) -> None:
    labels = torch.arange(6).repeat_interleave(5)
    features = torch.eye(6)[labels] * 3 + 0.01 * torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    result = identity_retrieval(features, labels, chunk_size=chunk_size)
    assert (result.top1, result.mean_ap, result.queries, result.excluded) == (1.0, 1.0, 30, 0)


def test_retrieval_hand_computed_case() -> None:
    # unit vectors at 0, 10, 25, 45 degrees; identities A, B, A, A.
    # q0: B(10) A(25) A(45) -> AP (1/2 + 2/3)/2 = 7/12, miss; q1 (B): no other B, left out;
    # q2: B(15) A(20) A(25) -> AP 7/12, miss; q3: A(20) B(35) A(45) -> AP (1 + 2/3)/2 = 5/6, hit.
    angles = torch.tensor([0.0, 10.0, 25.0, 45.0]).deg2rad()
    features = torch.stack([angles.cos(), angles.sin()], 1)
    result = identity_retrieval(features, torch.tensor([0, 1, 0, 0]), chunk_size=3)
    assert (result.queries, result.excluded) == (3, 1)
    assert math.isclose(result.top1, 1 / 3)
    assert math.isclose(result.mean_ap, (7 / 12 + 7 / 12 + 5 / 6) / 3)


def test_retrieval_of_random_features_is_at_chance() -> None:
    ids, per_id = 20, 20
    n, positives = ids * per_id, per_id - 1
    labels = torch.arange(ids).repeat_interleave(per_id)
    generator = torch.Generator().manual_seed(0)
    results = [identity_retrieval(torch.randn(n, 64, generator=generator), labels) for _ in range(5)]
    top1 = float(np.mean([r.top1 for r in results]))
    mean_ap = float(np.mean([r.mean_ap for r in results]))
    harmonic = sum(1 / k for k in range(1, n))  # expected AP of a random ranking of n-1 candidates
    chance_ap = ((positives - 1) / (n - 2) * (n - 1 - harmonic) + harmonic) / (n - 1)
    assert abs(top1 - positives / (n - 1)) < 0.02
    assert abs(mean_ap - chance_ap) < 0.01


def _exact_random_ranking_scores(labels: list[int]) -> tuple[float, float]:
    """Top-1 and mean AP of leave-one-out retrieval averaged over every ordering of every query's candidates."""
    top1, aps, queries = 0.0, 0.0, 0
    for q, label in enumerate(labels):
        same = [labels[j] == label for j in range(len(labels)) if j != q]
        if not any(same):
            continue
        orders = list(itertools.permutations(same))
        top1 += sum(order[0] for order in orders) / len(orders)
        ap = 0.0
        for order in orders:
            hits = [k for k, positive in enumerate(order, start=1) if positive]
            ap += sum(i / k for i, k in enumerate(hits, start=1)) / len(hits)
        aps += ap / len(orders)
        queries += 1
    return top1 / queries, aps / queries


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 0, 1, 1, 1, 2], [3, 3, 3, 3, 7, 7, 9], [0, 1, 1]])
def test_retrieval_chance_is_the_expectation_over_every_ranking(labels: list[int]) -> None:
    top1, mean_ap = _exact_random_ranking_scores(labels)
    chance = retrieval_chance(torch.tensor(labels))
    assert chance["top1"] == pytest.approx(top1, rel=1e-12)
    assert chance["mean_ap"] == pytest.approx(mean_ap, rel=1e-12)


def test_retrieval_chance_without_any_positive_is_nan() -> None:
    for labels in ([0, 1, 2], [5]):
        chance = retrieval_chance(torch.tensor(labels))
        assert math.isnan(chance["top1"]) and math.isnan(chance["mean_ap"])
    with pytest.raises(ValueError, match=r"\(N,\)"):
        retrieval_chance(torch.zeros(2, 2))


def test_retrieval_chance_matches_random_features() -> None:
    labels = torch.arange(10).repeat_interleave(6)
    generator = torch.Generator().manual_seed(3)
    results = [identity_retrieval(torch.randn(60, 32, generator=generator), labels) for _ in range(40)]
    chance = retrieval_chance(labels)
    assert abs(float(np.mean([r.top1 for r in results])) - chance["top1"]) < 0.03
    assert abs(float(np.mean([r.mean_ap for r in results])) - chance["mean_ap"]) < 0.015


def test_exclude_same_group_retrieves_across_groups() -> None:
    # features dominated by the group (e.g. expression): within a group the other identity is nearest
    e = torch.eye(4)
    labels, groups = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    features = 3 * e[groups] + e[2 + labels]
    within = identity_retrieval(features, labels)
    assert (within.top1, within.mean_ap) == (0.0, 0.5)
    across = identity_retrieval(features, labels, groups, exclude_same_group=True)
    assert (across.top1, across.mean_ap, across.queries) == (1.0, 1.0, 4)
    # an identity seen in one group only has no cross-group positive
    alone = identity_retrieval(features, torch.tensor([0, 0, 1, 2]), groups, exclude_same_group=True)
    assert (alone.queries, alone.excluded) == (2, 2)
    with pytest.raises(ValueError):
        identity_retrieval(features, labels, groups)
    with pytest.raises(ValueError):
        identity_retrieval(features, labels, exclude_same_group=True)


@pytest.mark.parametrize(("use_groups", "chunk_size"), [(False, 16), (True, 50), (True, 1000)])
def test_retrieval_matches_brute_force(use_groups: bool, chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(150, 6, generator=generator)
    labels = torch.randint(0, 25, (150,), generator=generator)
    groups = torch.randint(0, 3, (150,), generator=generator) if use_groups else None
    result = identity_retrieval(features, labels, groups, exclude_same_group=use_groups, chunk_size=chunk_size)
    top1, mean_ap, queries = brute_force_retrieval(features, labels, groups)
    assert result.queries == queries and result.excluded == 150 - queries
    assert math.isclose(result.top1, top1) and math.isclose(result.mean_ap, mean_ap, rel_tol=1e-9)


def test_retrieval_ties_count_against_the_query() -> None:
    result = identity_retrieval(torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]))  # every similarity is 0
    assert (result.top1, result.mean_ap) == (0.0, 1 / 3)


# ---------------------------------------------------------------- linear probe


def test_linear_probe_separates_separable_features() -> None:
    generator = torch.Generator().manual_seed(0)
    classes = 7
    y_train, y_test = torch.arange(classes).repeat(60), torch.arange(classes).repeat(20)
    centres = 4 * torch.randn(classes, 16, generator=generator)
    x_train = centres[y_train] + 0.3 * torch.randn(len(y_train), 16, generator=generator)
    x_test = centres[y_test] + 0.3 * torch.randn(len(y_test), 16, generator=generator)
    result = linear_probe(x_train, y_train, x_test, y_test)
    assert result.accuracy == 1.0 and result.macro_f1 == 1.0 and result.val_accuracy == 1.0
    assert torch.equal(result.per_class_accuracy, torch.ones(classes, dtype=torch.float64))
    assert math.isclose(result.uniform_chance, 1 / 7) and math.isclose(result.majority_accuracy, 1 / 7)


def test_linear_probe_on_random_labels_is_near_chance_and_deterministic() -> None:
    generator = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(1000, 32, generator=generator), torch.randn(600, 32, generator=generator)
    y_train = torch.randint(0, 5, (1000,), generator=generator)
    y_test = torch.randint(0, 5, (600,), generator=generator)
    result = linear_probe(x_train, y_train, x_test, y_test, seed=3)
    assert abs(result.accuracy - 0.2) < 0.07
    assert result.uniform_chance == 0.2
    assert result.majority_accuracy == float((y_test == torch.bincount(y_train).argmax()).double().mean())
    again = linear_probe(x_train, y_train, x_test, y_test, seed=3)
    assert again.accuracy == result.accuracy and again.weight_decay == result.weight_decay
    assert torch.equal(again.per_class_accuracy, result.per_class_accuracy)


def _identity_biased(seed: int, identities: int, per_identity: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items whose identity predicts their class (each identity has a favourite class, and a large feature offset)
    beside one weak class signal shared by all identities: memorising identities helps only on seen ones."""
    generator = torch.Generator().manual_seed(seed)
    identity = torch.arange(identities).repeat_interleave(per_identity)
    favourite = torch.randint(0, 3, (identities,), generator=generator)
    other = torch.randint(0, 3, (len(identity),), generator=generator)
    y = torch.where(torch.rand(len(identity), generator=generator) < 0.8, favourite[identity], other)
    x = 3 * torch.randn(identities, 64, generator=generator)[identity] + torch.randn(len(identity), 64,
                                                                                     generator=generator)
    x[:, 0] = 0.8 * y + torch.randn(len(identity), generator=generator)
    return x, y, identity


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_probe_group_folds_score_unseen_groups(seed: int) -> None:
    x, y, identity = _identity_biased(seed, 60, 12)
    train = identity < 30
    args = (x[train], y[train], x[~train], y[~train])
    stratified = linear_probe(*args, seed=seed)
    grouped = linear_probe(*args, seed=seed, groups=identity[train])
    # A stratified split shares identities with the fit: its accuracy is that of memorised identities.
    assert stratified.val_accuracy - stratified.accuracy > 0.3
    # Group-disjoint folds score identities the fit never saw, as the test does.
    assert abs(grouped.val_accuracy - grouped.accuracy) < 0.15
    again = linear_probe(*args, seed=seed, groups=identity[train])
    assert (again.accuracy, again.weight_decay, again.val_accuracy) == (
        grouped.accuracy, grouped.weight_decay, grouped.val_accuracy)


def test_linear_probe_group_folds_are_checked() -> None:
    x, y, identity = _identity_biased(0, 6, 4)
    with pytest.raises(ValueError, match="folds must be in"):
        linear_probe(x, y, x, y, groups=identity, folds=7)
    with pytest.raises(ValueError, match="groups must be"):
        linear_probe(x, y, x, y, groups=identity[:-1])


def test_linear_probe_chance_levels_and_absent_classes() -> None:
    # class 0 is the training majority; class 3 never occurs in the test split
    y_train = torch.tensor([0] * 30 + [1] * 10 + [2] * 10 + [3] * 10)
    y_test = torch.tensor([0] * 5 + [1] * 10 + [2] * 5)
    x_train, x_test = 5 * torch.eye(4)[y_train], 5 * torch.eye(4)[y_test]
    result = linear_probe(x_train, y_train, x_test, y_test, weight_decays=(1e-2,))
    assert result.majority_accuracy == 0.25 and result.uniform_chance == 0.25
    assert result.accuracy == 1.0 and result.weight_decay == 1e-2
    assert torch.equal(result.per_class_accuracy[:3], torch.ones(3, dtype=torch.float64))
    assert result.per_class_accuracy[3].isnan()
    with pytest.raises(ValueError, match="labels"):
        linear_probe(x_train, y_train, x_test, y_test, num_classes=3)
    chance = probe_chance(y_train, y_test, 4)
    assert chance == {"majority_accuracy": result.majority_accuracy, "uniform": result.uniform_chance,
                      "majority_class": 0}


def test_probe_chance_names_the_majority_class_and_breaks_ties_low() -> None:
    chance = probe_chance(torch.tensor([2, 2, 1, 1, 0]), torch.tensor([1, 1, 1, 2]), 3, ("a", "b", "c"))
    assert chance == {"majority_accuracy": 0.75, "uniform": 1 / 3, "majority_class": "b"}
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        probe_chance(torch.tensor([0]), torch.tensor([0]), 3, ("a", "b"))
    with pytest.raises(ValueError, match="empty"):
        probe_chance(torch.tensor([0]), torch.tensor([], dtype=torch.long), 3)


# ---------------------------------------------------------------- clip invariance


def test_clip_invariance_of_constant_clips_is_perfect() -> None:
    latents = torch.randn(3, 1, 5, generator=torch.Generator().manual_seed(0)).expand(3, 4, 5)
    out = clip_invariance(latents)
    assert out["cosine_to_clip_mean"] == pytest.approx(1.0)
    assert out["distance_to_clip_mean"] == out["relative_distance"] == out["distance_to_target"] == 0.0


def test_clip_invariance_on_a_hand_computed_clip() -> None:
    # one clip, two frames (3, 4) and (3, -4): mean (3, 0), each frame 4 away from it, norms 5, cosine 3/5
    latents = torch.tensor([[[3.0, 4.0], [3.0, -4.0]]])
    out = clip_invariance(latents, target=torch.tensor([[0.0, 0.0]]))
    assert out == pytest.approx({"cosine_to_clip_mean": 0.6, "distance_to_clip_mean": 4.0, "relative_distance": 0.8,
                                 "distance_to_target": 5.0})
    assert clip_invariance(latents)["distance_to_target"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="target"):
        clip_invariance(latents, target=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(M, F, D\)"):
        clip_invariance(latents[0])

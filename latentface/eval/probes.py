"""Probes on any features: leave-one-out identity retrieval and a linear expression probe, with their chance
levels (`retrieval_chance`, `probe_chance`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.eval.fer_probe import stratified_split


@dataclass(frozen=True)
class RetrievalResult:
    """Leave-one-out identity retrieval scores.

    Attributes:
        top1: fraction of queries whose most similar candidate has the query's identity.
        mean_ap: mean over queries of the average precision of the same-identity candidates.
        queries: number of queries scored.
        excluded: number of items left out as queries because no candidate shares their identity.
    """

    top1: float
    mean_ap: float
    queries: int
    excluded: int


@dataclass(frozen=True)
class ProbeResult:
    """Linear probe scores on the test split, with chance levels.

    Attributes:
        accuracy: test accuracy.
        macro_f1: F1 averaged over the classes present in the test labels or the predictions.
        per_class_accuracy: (C,) recall of each class on the test split; NaN for classes absent from it.
        majority_accuracy: test accuracy of always predicting the most frequent training class.
        uniform_chance: 1 / number of classes.
        weight_decay: the selected L2 weight.
        val_accuracy: validation accuracy of the selected weight (mean over the folds with group-disjoint
            cross-validation).
    """

    accuracy: float
    macro_f1: float
    per_class_accuracy: Tensor
    majority_accuracy: float
    uniform_chance: float
    weight_decay: float
    val_accuracy: float


def identity_retrieval(
    features: Tensor,
    labels: Tensor,
    groups: Tensor | None = None,
    *,
    exclude_same_group: bool = False,
    chunk_size: int = 256,
) -> RetrievalResult:
    """Leave-one-out identity retrieval by cosine similarity.

    Every item is a query; its candidates are all other items (with `exclude_same_group`, only those of other
    groups), ranked by cosine similarity; a candidate of another identity that ties with a same-identity one
    ranks before it (ties count against the query). Queries with no same-identity candidate are left out and
    counted. Time is O(N^2 log P) for P items per identity, without a full sort; memory is O(chunk_size * N).

    Args:
        features: (N, D) features.
        labels: (N,) identity labels.
        groups: (N,) condition labels (e.g. expression class or clip), used with `exclude_same_group`.
        exclude_same_group: retrieve only across groups: items sharing the query's group are not candidates.
        chunk_size: queries scored at once.

    Returns:
        :class:`RetrievalResult`.
    """
    n = _check_features(features, labels)
    if exclude_same_group != (groups is not None):
        raise ValueError("groups and exclude_same_group=True go together")
    if groups is not None and groups.shape != labels.shape:
        raise ValueError(f"groups {tuple(groups.shape)} must match labels {tuple(labels.shape)}")
    feats = F.normalize(features.detach().to(torch.float32), dim=1)
    labels = labels.to(feats.device)
    groups = None if groups is None else groups.to(feats.device)
    hits_top1 = 0
    ap_sum = 0.0
    queries = 0
    for start in range(0, n, chunk_size):
        query = torch.arange(start, min(start + chunk_size, n), device=feats.device)
        candidate = query[:, None] != torch.arange(n, device=feats.device)[None, :]
        if groups is not None:
            candidate &= groups[query, None] != groups[None, :]
        positive = candidate & (labels[query, None] == labels[None, :])
        num_positive = positive.sum(1)
        max_positive = int(num_positive.max())
        if max_positive == 0:
            continue
        similarity = feats[query] @ feats.T
        # Positive similarities in decreasing order t_1 >= t_2 >= ..., padded with -inf (a row has P_q of them).
        top = similarity.masked_fill(~positive, -math.inf).topk(max_positive, dim=1).values
        # above[q, j]: positives strictly more similar than candidate j; a negative j precedes (or ties) the
        # k-th positive iff above < k, so the k-th positive's rank is k + #{negatives with above < k}.
        above = torch.searchsorted(-top, -similarity, side="left")
        negative = (candidate & ~positive).to(torch.int64)
        histogram = torch.zeros(len(query), max_positive + 1, dtype=torch.int64, device=feats.device)
        preceding = histogram.scatter_add_(1, above, negative).cumsum(1)[:, :max_positive]
        k = torch.arange(1, max_positive + 1, device=feats.device)
        valid = k[None, :] <= num_positive[:, None]
        precision = torch.where(valid, k.double() / (k + preceding).double(), 0.0)
        keep = num_positive > 0
        hits_top1 += int((preceding[keep, 0] == 0).sum())
        ap_sum += float((precision.sum(1)[keep] / num_positive[keep]).sum())
        queries += int(keep.sum())
    if queries == 0:
        raise ValueError("no query has a same-identity candidate")
    return RetrievalResult(top1=hits_top1 / queries, mean_ap=ap_sum / queries, queries=queries, excluded=n - queries)


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int | None = None,
    weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    val_fraction: float = 0.2,
    groups: Tensor | None = None,
    folds: int = 4,
    max_iter: int = 100,
    seed: int = 0,
) -> ProbeResult:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS, CPU, float32).

    Features are standardised with the mean and std of the training set. The L2 weight (``0.5 * wd * ||W||^2``
    added to the mean cross-entropy; bias not penalised) is selected by validation accuracy (ties go to the larger
    weight), then the model is refit on the whole training set. Without `groups` the validation split is a
    stratified split carved from the training set; the grid is fit largest weight first, from zero and then each
    fit from the previous solution, and the refit starts from the selected one. With `groups` (e.g. identities,
    when the test items belong to groups the training set lacks) the weight is selected by cross-validation over
    `folds` group-disjoint folds (mean accuracy), so that selection scores unseen groups as the test does; each
    fold and the refit walk the grid from the largest weight down, each fit from the previous solution. With the
    seeded split or folds the probe is deterministic.

    Args:
        train_features: (N, D) training features.
        train_labels: (N,) integer labels in [0, num_classes).
        test_features: (M, D) test features.
        test_labels: (M,) integer labels.
        num_classes: number of classes; default ``max label + 1`` over both splits.
        weight_decays: the grid of L2 weights.
        val_fraction: fraction of each training class held out for selection (without `groups`).
        groups: (N,) group labels of the training items: select by group-disjoint cross-validation.
        folds: number of group-disjoint folds (with `groups`; at most the number of groups).
        max_iter: L-BFGS iterations per fit.
        seed: seed of the validation split.

    Returns:
        :class:`ProbeResult`.
    """
    _check_features(train_features, train_labels)
    _check_features(test_features, test_labels)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"train and test feature sizes differ: {train_features.shape[1]} vs {test_features.shape[1]}")
    if not weight_decays:
        raise ValueError("weight_decays must not be empty")
    y_train, y_test = (y.detach().to("cpu", torch.long) for y in (train_labels, test_labels))
    classes = num_classes if num_classes is not None else int(max(y_train.max(), y_test.max())) + 1
    if min(y_train.min(), y_test.min()) < 0 or max(y_train.max(), y_test.max()) >= classes:
        raise ValueError(f"labels must lie in [0, {classes})")
    x_train = train_features.detach().to("cpu", torch.float32)
    mean = x_train.mean(0)
    std = x_train.std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z_train = (x_train - mean) / std
    z_test = (test_features.detach().to("cpu", torch.float32) - mean) / std

    grid = sorted(weight_decays, reverse=True)
    zeros = (torch.zeros(classes, z_train.shape[1]), torch.zeros(classes))
    if groups is None:
        fit_idx, val_idx = stratified_split(y_train, val_fraction, seed, floor=True)
        best_wd, best_val, best_params = math.nan, -1.0, zeros
        params = zeros
        for wd in grid:
            params = _fit(z_train[fit_idx], y_train[fit_idx], params, wd, max_iter)
            val = float((_predict(params, z_train[val_idx]) == y_train[val_idx]).double().mean())
            if val > best_val:
                best_wd, best_val, best_params = wd, val, params
        final = _fit(z_train, y_train, best_params, best_wd, max_iter)
    else:
        scores = torch.zeros(len(grid), dtype=torch.float64)
        for val_mask in _group_folds(groups, len(y_train), folds, seed):
            params = zeros
            for i, wd in enumerate(grid):
                params = _fit(z_train[~val_mask], y_train[~val_mask], params, wd, max_iter)
                scores[i] += float((_predict(params, z_train[val_mask]) == y_train[val_mask]).double().mean())
        scores /= folds
        best = int(scores.argmax())  # first maximum: the larger weight wins ties
        best_wd, best_val = grid[best], float(scores[best])
        final = zeros
        for wd in grid[: best + 1]:
            final = _fit(z_train, y_train, final, wd, max_iter)
    pred = _predict(final, z_test)

    true_pos = torch.bincount(y_test[pred == y_test], minlength=classes).double()
    support = torch.bincount(y_test, minlength=classes).double()
    predicted = torch.bincount(pred, minlength=classes).double()
    present = (support + predicted) > 0
    f1 = 2 * true_pos[present] / (support[present] + predicted[present])
    majority = torch.bincount(y_train, minlength=classes).argmax()
    return ProbeResult(
        accuracy=float((pred == y_test).double().mean()),
        macro_f1=float(f1.mean()),
        per_class_accuracy=true_pos / support,
        majority_accuracy=float((y_test == majority).double().mean()),
        uniform_chance=1.0 / classes,
        weight_decay=best_wd,
        val_accuracy=best_val,
    )


def retrieval_chance(labels: Tensor) -> dict[str, float]:
    """Expected scores of a random ranking in the leave-one-out retrieval of :func:`identity_retrieval`.

    A query with P same-identity items among M candidates has expected top-1 ``P / M`` and expected average
    precision ``(1/M) sum_{i=1..M} (1 + (i - 1)(P - 1)/(M - 1)) / i``; both are averaged over the queries that have
    a same-identity candidate, as :func:`identity_retrieval` averages them (every item a query, all other items its
    candidates).

    Args:
        labels: (N,) identity labels.

    Returns:
        ``top1`` and ``mean_ap``; NaN for both when no query has a same-identity candidate.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got {tuple(labels.shape)}")
    counts = torch.bincount(torch.unique(labels.detach().cpu(), return_inverse=True)[1]).double()
    m = len(labels) - 1
    p = counts[counts > 1] - 1  # positives per query, one entry per identity that has a positive
    weight = p + 1  # queries of that identity
    if len(p) == 0:
        return {"top1": math.nan, "mean_ap": math.nan}
    i = torch.arange(1, m + 1, dtype=torch.float64)
    if m > 1:
        ap = ((1 + (i[None] - 1) * (p[:, None] - 1) / (m - 1)) / i[None]).sum(1) / m
    else:
        ap = torch.ones_like(p)
    return {"top1": float((weight * p / m).sum() / weight.sum()), "mean_ap": float((weight * ap).sum() / weight.sum())}


def probe_chance(
    train_labels: Tensor, test_labels: Tensor, num_classes: int, class_names: Sequence[str] | None = None
) -> dict[str, float | int | str]:
    """Chance levels of a classification probe (as :class:`ProbeResult` holds them for :func:`linear_probe`).

    Args:
        train_labels: (N,) integer training labels in [0, num_classes).
        test_labels: (M,) integer test labels, M >= 1.
        num_classes: number of classes.
        class_names: names of the classes (length `num_classes`); None: the majority class is given by index.

    Returns:
        ``majority_accuracy`` (test accuracy of always predicting the most frequent training class, the lowest
        index among ties), ``uniform`` (1 / classes) and ``majority_class`` (its name, or its index).
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    if len(test_labels) == 0:
        raise ValueError("test_labels are empty")
    majority = int(torch.bincount(train_labels.detach().cpu().long(), minlength=num_classes).argmax())
    return {"majority_accuracy": float((test_labels.detach().cpu() == majority).double().mean()),
            "uniform": 1.0 / num_classes,
            "majority_class": majority if class_names is None else class_names[majority]}


def _group_folds(groups: Tensor, n: int, folds: int, seed: int) -> list[Tensor]:
    """Boolean validation masks of `folds` group-disjoint folds: the groups in a seeded random order, dealt out
    in turn."""
    groups = groups.detach().to("cpu", torch.long)
    if groups.shape != (n,):
        raise ValueError(f"groups must be ({n},), got {tuple(groups.shape)}")
    unique = torch.unique(groups)
    if not 2 <= folds <= len(unique):
        raise ValueError(f"folds must be in [2, {len(unique)}] (the number of groups), got {folds}")
    order = unique[torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed))]
    return [torch.isin(groups, order[f::folds]) for f in range(folds)]


def _fit(
    z: Tensor, y: Tensor, init: tuple[Tensor, Tensor], weight_decay: float, max_iter: int
) -> tuple[Tensor, Tensor]:
    """Fit (weight (C, D), bias (C,)) of a multinomial logistic regression with L-BFGS from `init`."""
    weight, bias = (p.clone().requires_grad_(True) for p in init)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(F.linear(z, weight, bias), y) + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _predict(params: tuple[Tensor, Tensor], z: Tensor) -> Tensor:
    """Class predictions for standardised features."""
    return F.linear(z, *params).argmax(1)


def _check_features(features: Tensor, labels: Tensor) -> int:
    """Check (N, D) finite features against (N,) labels; return N."""
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if features.shape[0] == 0:
        raise ValueError("features are empty")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or Inf")
    return features.shape[0]

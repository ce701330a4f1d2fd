"""Face verification protocols on precomputed pair features (LFW / SLLFW style, 10 folds), with ROC and AUC.

- Protocol A (official ``identity_test.py``, 2023): cosine similarity; for each fold the threshold is swept over
  ``numpy.arange(-1, 1, 0.005)`` on the other folds, a pair is "same" when its similarity is strictly above the
  threshold, the threshold with the highest training accuracy wins (ties: the largest such threshold, as the
  official ``>=`` update does), and accuracy is measured on the held-out fold.
- Protocol B (official ``identity_test.py``, 2024): per fold a ``Linear(3D, 2)`` on
  ``[|f1 - f2|, |f1 + f2|, |f1 * f2|]``, cross-entropy, Adam. The released loop's inner range runs over
  ``len(predicts)``, which is 3 (a list of features, features and labels), so every "epoch" is one batch of 128
  pairs drawn from a fresh permutation of the training folds: ``released_quirk=True``. The default runs each
  epoch over all training pairs in batches.

Both report the per-fold accuracies, their mean and population standard deviation (``numpy.std``), and an
out-of-fold score per pair (protocol A: the cosine similarity; B: the held-out classifier's probability of
"same") with its ROC AUC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.data.pairs import consecutive_folds
from latentface.eval.heads import seeded_linear

COSINE_EPS = 1e-5  # added to the product of the norms, as the official cosine


@dataclass(frozen=True)
class VerificationReport:
    """Results of a verification protocol.

    Attributes:
        protocol: ``"cosine-threshold"`` (A) or ``"pair-classifier"`` / ``"pair-classifier-released"`` (B).
        mean_accuracy: mean of the per-fold accuracies.
        std_accuracy: their population standard deviation.
        fold_accuracies: accuracy on each held-out fold, folds in increasing id order.
        fold_thresholds: protocol A: the threshold chosen for each fold; B: None.
        samples_per_epoch: protocol B: training pairs seen in each epoch, per fold; A: None.
        scores: (N,) out-of-fold score of every pair (higher = more likely the same identity).
        auc: area under the ROC curve of `scores`.
    """

    protocol: str
    mean_accuracy: float
    std_accuracy: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...] | None
    samples_per_epoch: tuple[tuple[int, ...], ...] | None
    scores: Tensor
    auc: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; the per-pair scores are left out, the per-epoch counts summarised as their range."""
        out: dict[str, object] = {
            "protocol": self.protocol,
            "mean_accuracy": self.mean_accuracy,
            "std_accuracy": self.std_accuracy,
            "fold_accuracies": list(self.fold_accuracies),
            "auc": self.auc,
        }
        if self.fold_thresholds is not None:
            out["fold_thresholds"] = list(self.fold_thresholds)
        if self.samples_per_epoch is not None:
            out["samples_per_epoch"] = [[min(fold), max(fold)] for fold in self.samples_per_epoch]
        return out


def released_folds(n: int = 6000, n_folds: int = 10) -> Tensor:
    """Fold id of each pair as the official ``KFold``: contiguous blocks ``[i*n//k, (i+1)*n//k)``.

    Args:
        n: number of pairs.
        n_folds: number of folds.

    Returns:
        (n,) int64 fold ids in [0, n_folds).
    """
    if n_folds < 2 or n < n_folds:
        raise ValueError(f"need n >= n_folds >= 2, got n={n}, n_folds={n_folds}")
    return torch.from_numpy(consecutive_folds(n, n_folds)).long()


def cosine_similarity(f1: Tensor, f2: Tensor) -> Tensor:
    """The official pair score ``<f1, f2> / (|f1| |f2| + 1e-5)``, row by row.

    Args:
        f1: (N, D) features of the first images.
        f2: (N, D) features of the second images.

    Returns:
        (N,) similarities in the features' dtype.
    """
    return (f1 * f2).sum(1) / (f1.norm(dim=1) * f2.norm(dim=1) + COSINE_EPS)


def cosine_threshold_protocol(
    f1: Tensor, f2: Tensor, same: Tensor, fold: Tensor, *, step: float = 0.005
) -> VerificationReport:
    """Protocol A: cosine similarity with a threshold chosen on the training folds.

    Args:
        f1: (N, D) features of the first images of the pairs.
        f2: (N, D) features of the second images.
        same: (N,) 1 (or True) for same-identity pairs, 0 otherwise.
        fold: (N,) fold id of each pair (see :func:`released_folds`); at least two folds.
        step: spacing of the thresholds ``numpy.arange(-1, 1, step)``.

    Returns:
        :class:`VerificationReport` with the per-fold thresholds.
    """
    same, fold = _check_pairs(f1, f2, same, fold)
    scores = cosine_similarity(f1.detach().cpu(), f2.detach().cpu())
    thresholds = torch.from_numpy(np.arange(-1.0, 1.0, step))
    # Compare in float64, as the official code compares Python floats of the float32 scores with numpy floats.
    predicted = scores.double()[:, None] > thresholds[None, :]
    correct = predicted == same.bool()[:, None]
    accuracies, chosen = [], []
    for k in fold.unique().tolist():
        test = fold == k
        hits = correct[~test].sum(0)
        best = len(thresholds) - 1 - int(hits.flip(0).argmax())  # the last threshold of maximal accuracy
        chosen.append(float(thresholds[best]))
        accuracies.append(float(correct[test, best].double().mean()))
    return _report("cosine-threshold", accuracies, tuple(chosen), None, scores, same)


def pair_classifier_protocol(
    f1: Tensor,
    f2: Tensor,
    same: Tensor,
    fold: Tensor,
    *,
    released_quirk: bool = False,
    epochs: int = 300,
    lr: float = 1e-4,
    batch_size: int = 128,
    seed: int = 1234,
    device: str | torch.device = "cpu",
) -> VerificationReport:
    """Protocol B: a linear pair classifier per fold on ``[|f1 - f2|, |f1 + f2|, |f1 * f2|]``.

    One seeded generator drives, fold after fold, the classifier initialisation (PyTorch's default for
    ``nn.Linear``) and the permutations, so a seed gives the same numbers every time.

    Args:
        f1: (N, D) features of the first images of the pairs.
        f2: (N, D) features of the second images.
        same: (N,) 1 for same-identity pairs, 0 otherwise.
        fold: (N,) fold id of each pair.
        released_quirk: train each epoch on one batch of `batch_size` random training pairs (as released)
            instead of on all training pairs.
        epochs: epochs per fold.
        lr: Adam learning rate.
        batch_size: pairs per step.
        seed: seed of the initialisations and permutations.
        device: where the classifiers are trained.

    Returns:
        :class:`VerificationReport` with the training pairs seen per epoch.
    """
    same, fold = _check_pairs(f1, f2, same, fold)
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    a, b = f1.detach().to(device, torch.float32), f2.detach().to(device, torch.float32)
    x = torch.cat([(a - b).abs(), (a + b).abs(), (a * b).abs()], dim=1)
    y = same.to(device)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.empty(len(y), dtype=torch.float32)
    accuracies: list[float] = []
    seen: list[tuple[int, ...]] = []
    for k in fold.unique().tolist():
        train = torch.nonzero(fold != k).flatten()
        test = torch.nonzero(fold == k).flatten()
        head = seeded_linear(x.shape[1], 2, bias=True, generator=generator, device=device)
        optimizer = torch.optim.Adam(head.parameters(), lr=lr)
        per_epoch = []
        for _ in range(epochs):
            order = train[torch.randperm(len(train), generator=generator)]
            starts = [0] if released_quirk else range(0, len(order), batch_size)
            count = 0
            for start in starts:
                idx = order[start:start + batch_size].to(device)
                loss = F.cross_entropy(head(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                count += len(idx)
            per_epoch.append(count)
        seen.append(tuple(per_epoch))
        with torch.no_grad():
            logits = head(x[test.to(device)])
        scores[test] = logits.softmax(1)[:, 1].float().cpu()
        accuracies.append(float((logits.argmax(1).cpu() == same[test]).double().mean()))
    name = "pair-classifier-released" if released_quirk else "pair-classifier"
    return _report(name, accuracies, None, tuple(seen), scores, same)


def roc_curve(scores: Tensor, same: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ROC curve: a point for every distinct score taken as threshold (predict "same" when score >= it).

    Tied scores move together, so a tie between positives and negatives is a diagonal segment.

    Args:
        scores: (N,) scores, higher = more likely the same identity.
        same: (N,) 1 / True for positives, 0 / False for negatives; both must occur.

    Returns:
        (fpr, tpr, thresholds) float64 tensors of equal length, starting at (0, 0) with threshold +inf and
        ending at (1, 1) with the lowest score.

    Raises:
        ValueError: misshaped inputs, NaN scores, or a single class.
    """
    if scores.ndim != 1 or same.shape != scores.shape or scores.numel() == 0:
        raise ValueError(f"scores and same must be non-empty (N,) tensors, got {tuple(scores.shape)} and "
                         f"{tuple(same.shape)}")
    s = scores.detach().cpu().double()
    if torch.isnan(s).any():
        raise ValueError("scores contain NaN")
    positive = same.detach().cpu().bool()
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f"ROC needs positives and negatives, got {num_pos} and {num_neg}")
    s, order = s.sort(descending=True, stable=True)
    positive = positive[order].double()
    last_of_tie = torch.cat([s[1:] != s[:-1], torch.tensor([True])])
    tp = positive.cumsum(0)[last_of_tie]
    fp = (1 - positive).cumsum(0)[last_of_tie]
    zero = torch.zeros(1, dtype=torch.float64)
    fpr = torch.cat([zero, fp / num_neg])
    tpr = torch.cat([zero, tp / num_pos])
    thresholds = torch.cat([torch.tensor([math.inf], dtype=torch.float64), s[last_of_tie]])
    return fpr, tpr, thresholds


def auc(fpr: Tensor, tpr: Tensor) -> float:
    """Area under a curve by the trapezoid rule.

    Args:
        fpr: (K,) x coordinates, non-decreasing (as :func:`roc_curve` returns them).
        tpr: (K,) y coordinates.

    Returns:
        The area.

    Raises:
        ValueError: misshaped inputs, fewer than two points, or decreasing x.
    """
    if fpr.ndim != 1 or fpr.shape != tpr.shape or len(fpr) < 2:
        raise ValueError(f"fpr and tpr must be (K,) with K >= 2, got {tuple(fpr.shape)} and {tuple(tpr.shape)}")
    x, y = fpr.double(), tpr.double()
    if (x[1:] < x[:-1]).any():
        raise ValueError("fpr must be non-decreasing")
    return float(torch.trapezoid(y, x))


def _report(
    protocol: str,
    accuracies: list[float],
    thresholds: tuple[float, ...] | None,
    seen: tuple[tuple[int, ...], ...] | None,
    scores: Tensor,
    same: Tensor,
) -> VerificationReport:
    """Summarise per-fold accuracies and score the out-of-fold scores."""
    acc = np.asarray(accuracies)
    return VerificationReport(
        protocol=protocol,
        mean_accuracy=float(acc.mean()),
        std_accuracy=float(acc.std()),
        fold_accuracies=tuple(accuracies),
        fold_thresholds=thresholds,
        samples_per_epoch=seen,
        scores=scores,
        auc=auc(*roc_curve(scores, same)[:2]),
    )


def _check_pairs(f1: Tensor, f2: Tensor, same: Tensor, fold: Tensor) -> tuple[Tensor, Tensor]:
    """Check the pair inputs (`same` and `fold` may also be numpy arrays, e.g. a ``PairSet``'s); return (same,
    fold) as CPU int64 tensors."""
    if f1.ndim != 2 or f1.shape != f2.shape or f1.shape[0] == 0:
        raise ValueError(f"f1 and f2 must be non-empty (N, D) tensors of one shape, got {tuple(f1.shape)} and "
                         f"{tuple(f2.shape)}")
    n = f1.shape[0]
    same, fold = torch.as_tensor(same), torch.as_tensor(fold)
    for name, t in (("same", same), ("fold", fold)):
        if t.shape != (n,):
            raise ValueError(f"{name} must be ({n},), got {tuple(t.shape)}")
    if not (torch.isfinite(f1).all() and torch.isfinite(f2).all()):
        raise ValueError("f1 or f2 contains NaN or Inf")
    same = same.detach().cpu().long()
    if ((same != 0) & (same != 1)).any():
        raise ValueError("same must hold only 0/1 (or False/True)")
    fold = fold.detach().cpu().long()
    if len(fold.unique()) < 2:
        raise ValueError("fold must hold at least two distinct fold ids")
    return same, fold

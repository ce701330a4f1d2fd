"""The FER linear probe on precomputed features: the released protocol and a clean, validation-selected one.

Both train the released head, ``BatchNorm1d(D) -> Linear(D, C, bias=False)``, with cross-entropy and Adam on
the head only, in shuffled mini-batches, with the released training-time horizontal flip: every training
sample, every epoch, uses the features of its flipped image with probability 0.5 (features of each image and
of its flip are computed beforehand and both passed in). They differ in what is reported:

- :func:`train_released_probe` evaluates on the test set after every epoch and reports the best test epoch, as
  the official code's checkpointing on ``val/acc`` (the test set) did, and also the last epoch.
- :func:`train_clean_probe` holds out a stratified validation split of the training set, trains over a grid of
  learning rates, selects (learning rate, epoch) on validation only, and only then evaluates that one model on
  the test set. There is no refit: the reported model is the selected snapshot, trained without the
  validation split.

Deviation from the released code, by design: the official head sees features recomputed each step, with a new
RDM start noise every time; here the features are fixed (one draw per image), so the stochastic RDM split acts
once rather than as an augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentface.eval.heads import seeded_linear

DEFAULT_LRS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@dataclass(frozen=True)
class ClassificationReport:
    """Classification metrics of predictions against labels, with how the model was selected.

    Attributes:
        accuracy: fraction of correct predictions.
        macro_f1: F1 averaged over the classes present in the labels or the predictions (scikit-learn's
            ``f1_score(average="macro")``, as the official ``EXPR_metric``).
        per_class_accuracy: recall of each class; NaN for a class absent from the labels.
        confusion: (C, C) int64 counts, row = true class, column = predicted class.
        selection: how the reported model was chosen (protocol, rule, learning rate, epoch, ...); empty for
            bare metrics.
    """

    accuracy: float
    macro_f1: float
    per_class_accuracy: tuple[float, ...]
    confusion: Tensor
    selection: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; NaN per-class accuracies become None."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class_accuracy": [None if math.isnan(a) else a for a in self.per_class_accuracy],
            "confusion": self.confusion.tolist(),
            "selection": dict(self.selection),
        }


@dataclass(frozen=True)
class FERProbeResult:
    """What a probe run reports.

    Attributes:
        report: test metrics of the protocol's model (released: best test epoch; clean: validation-selected).
        last_epoch: test metrics after the last epoch (clean: at the selected learning rate).
        history: one dict per trained epoch (released: epoch, train_loss, test_accuracy; clean: lr, epoch,
            train_loss, val_accuracy, val_loss).
    """

    report: ClassificationReport
    last_epoch: ClassificationReport
    history: tuple[dict[str, float], ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "report": self.report.to_dict(),
            "last_epoch": self.last_epoch.to_dict(),
            "history": [dict(h) for h in self.history],
        }


def classification_report(
    pred: Tensor, labels: Tensor, num_classes: int, selection: dict[str, object] | None = None
) -> ClassificationReport:
    """Accuracy, macro F1, per-class accuracy and confusion counts.

    Args:
        pred: (N,) predicted classes in [0, num_classes).
        labels: (N,) true classes in [0, num_classes).
        num_classes: number of classes C.
        selection: optional selection info stored in the report.

    Returns:
        :class:`ClassificationReport`.

    Raises:
        ValueError: empty or misshaped inputs, or classes outside [0, num_classes).
    """
    if pred.ndim != 1 or labels.ndim != 1 or pred.shape != labels.shape or pred.numel() == 0:
        raise ValueError(f"pred and labels must be non-empty (N,) tensors, got {tuple(pred.shape)} and "
                         f"{tuple(labels.shape)}")
    pred, labels = pred.detach().to("cpu", torch.long), labels.detach().to("cpu", torch.long)
    _check_labels(pred, num_classes, "pred")
    _check_labels(labels, num_classes, "labels")
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
    true_pos = confusion.diagonal().double()
    support = confusion.sum(1).double()
    predicted = confusion.sum(0).double()
    present = (support + predicted) > 0
    f1 = 2 * true_pos[present] / (support[present] + predicted[present])
    per_class = torch.where(support > 0, true_pos / support.clamp(min=1), math.nan)
    return ClassificationReport(
        accuracy=float(true_pos.sum() / len(labels)),
        macro_f1=float(f1.mean()),
        per_class_accuracy=tuple(float(a) for a in per_class),
        confusion=confusion,
        selection=dict(selection or {}),
    )


def train_released_probe(
    train_feats: Tensor,
    train_flip_feats: Tensor | None,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 1234,
    device: str | torch.device = "cpu",
) -> FERProbeResult:
    """The released FER linear probe (official ``expr_test.py`` / ``ExprClassifier``), on fixed features.

    BatchNorm1d -> Linear(bias=False), cross-entropy, Adam(lr) on the head, shuffled batches (the last, partial
    batch kept, except a batch of one, which BatchNorm cannot train on), random flip per sample, test accuracy
    after every epoch. Defaults are RAF-DB's (AffectNet: ``batch_size=128``, 8 classes).

    Args:
        train_feats: (N, D) features of the training images.
        train_flip_feats: (N, D) features of their horizontal flips; None trains without the flip (not the
            released protocol).
        train_labels: (N,) classes in [0, num_classes).
        test_feats: (M, D) test features.
        test_labels: (M,) test classes.
        num_classes: number of classes C.
        epochs: training epochs.
        lr: Adam learning rate.
        batch_size: training batch size.
        seed: seed of the head's initialisation, the batch order and the flips.
        device: where the head is trained.

    Returns:
        :class:`FERProbeResult` whose ``report`` is the best test epoch (the released quirk; ties go to the
        earlier epoch) and ``last_epoch`` the final one.
    """
    _check_inputs(train_feats, train_flip_feats, train_labels, test_feats, test_labels, num_classes)
    x_test = test_feats.detach().to(device, torch.float32)
    history: list[dict[str, float]] = []
    best: tuple[float, ClassificationReport] | None = None
    last: ClassificationReport | None = None
    for epoch, loss, head in _train_epochs(train_feats, train_flip_feats, train_labels, num_classes=num_classes,
                                           epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device):
        info: dict[str, object] = {"protocol": "released", "rule": "best test accuracy (released quirk)",
                                   "lr": lr, "epoch": epoch}
        last = classification_report(_predict(head, x_test), test_labels, num_classes, info)
        history.append({"epoch": epoch, "train_loss": loss, "test_accuracy": last.accuracy})
        if best is None or last.accuracy > best[0]:
            best = (last.accuracy, last)
    assert best is not None and last is not None
    last = replace(last, selection={**last.selection, "rule": "last epoch"})
    return FERProbeResult(report=best[1], last_epoch=last, history=tuple(history))


def train_clean_probe(
    train_feats: Tensor,
    train_flip_feats: Tensor | None,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    lrs: Sequence[float] = DEFAULT_LRS,
    val_fraction: float = 0.1,
    epochs: int = 20,
    batch_size: int = 32,
    seed: int = 1234,
    device: str | torch.device = "cpu",
) -> FERProbeResult:
    """The released head and training, with (learning rate, epoch) selected on a held-out validation split.

    A stratified ``val_fraction`` of each training class (at least one item of every class with two or more,
    never all of a class) is held out; for each learning rate a head starting from the same seeded
    initialisation, batch order and flips trains on the rest, and is scored on the validation split (unflipped
    features) after every epoch. The selection is the highest validation accuracy, ties broken by the lower
    validation cross-entropy, then by the earlier (learning rate, epoch) in grid order. The test set is used
    once, after selection, for the selected snapshot and the last epoch at the selected learning rate; nothing
    is refit on the whole training set.

    Args:
        train_feats: (N, D) training features.
        train_flip_feats: (N, D) features of the flipped training images, or None for no flip augmentation.
        train_labels: (N,) classes in [0, num_classes).
        test_feats: (M, D) test features.
        test_labels: (M,) test classes.
        num_classes: number of classes C.
        lrs: the learning-rate grid (Adam).
        val_fraction: fraction of each class held out for selection.
        epochs: training epochs per learning rate.
        batch_size: training batch size.
        seed: seed of the split, the initialisation, the batch order and the flips.
        device: where heads are trained.

    Returns:
        :class:`FERProbeResult`.

    Raises:
        ValueError: bad shapes or labels, an empty grid, or too few training items for a validation split.
    """
    _check_inputs(train_feats, train_flip_feats, train_labels, test_feats, test_labels, num_classes)
    if not lrs:
        raise ValueError("lrs must not be empty")
    fit_idx, val_idx = stratified_split(train_labels, val_fraction, seed)
    flips = None if train_flip_feats is None else train_flip_feats[fit_idx]
    x_val = train_feats.detach()[val_idx].to(device, torch.float32)
    y_val = train_labels.detach().to(device, torch.long)[val_idx.to(device)]
    history: list[dict[str, float]] = []
    best_key: tuple[float, float] | None = None
    best_lr = lrs[0]
    best_state: dict[str, Tensor] = {}
    best_info: dict[str, object] = {}
    last_states: dict[float, dict[str, Tensor]] = {}
    for lr in lrs:
        for epoch, loss, head in _train_epochs(train_feats[fit_idx], flips, train_labels[fit_idx],
                                               num_classes=num_classes, epochs=epochs, lr=lr, batch_size=batch_size,
                                               seed=seed, device=device):
            with torch.no_grad():
                logits = head(x_val)
            val_acc = float((logits.argmax(1) == y_val).double().mean())
            val_loss = float(F.cross_entropy(logits, y_val))
            history.append({"lr": lr, "epoch": epoch, "train_loss": loss, "val_accuracy": val_acc,
                            "val_loss": val_loss})
            if best_key is None or (val_acc, -val_loss) > best_key:
                best_key = (val_acc, -val_loss)
                best_lr, best_state = lr, _snapshot(head)
                best_info = {"protocol": "clean", "rule": "best validation accuracy, then lower validation loss",
                             "lr": lr, "epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss,
                             "val_size": len(val_idx), "fit_size": len(fit_idx), "refit": False}
        last_states[lr] = _snapshot(head)
    x_test = test_feats.detach().to(device, torch.float32)
    head = _new_head(train_feats.shape[1], num_classes, torch.Generator().manual_seed(seed), device)
    head.load_state_dict(best_state)
    report = classification_report(_predict(head.eval(), x_test), test_labels, num_classes, best_info)
    head.load_state_dict(last_states[best_lr])
    final = next(h for h in reversed(history) if h["lr"] == best_lr)
    last_info = {**best_info, "rule": "last epoch at the selected lr", "epoch": epochs,
                 "val_accuracy": final["val_accuracy"], "val_loss": final["val_loss"]}
    last = classification_report(_predict(head.eval(), x_test), test_labels, num_classes, last_info)
    return FERProbeResult(report=report, last_epoch=last, history=tuple(history))


def stratified_split(labels: Tensor, fraction: float, seed: int, *, floor: bool = False) -> tuple[Tensor, Tensor]:
    """Seeded stratified split of indices into (fit, validation).

    Each class of n items gives ``round(fraction * n)`` random items to validation, clipped to [1, n - 1] when
    n >= 2 (a class of one item stays in fit); with ``floor=True``, ``floor(fraction * n)`` items, unclipped.

    Args:
        labels: (N,) class labels.
        fraction: validation fraction, in (0, 1).
        seed: seed of the draw.
        floor: the unclipped floor rule (used by `latentface.eval.linear_probe`).

    Returns:
        Sorted int64 index tensors (fit, validation) on the CPU.

    Raises:
        ValueError: `fraction` outside (0, 1), or an empty validation split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    labels = labels.detach().to("cpu", torch.long)
    generator = torch.Generator().manual_seed(seed)
    fit, val = [], []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = int(fraction * len(idx)) if floor else min(max(round(fraction * len(idx)), 1), len(idx) - 1)
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    val_idx, fit_idx = torch.cat(val).sort().values, torch.cat(fit).sort().values
    if len(val_idx) == 0:
        raise ValueError("the validation split is empty: too few training items per class for val_fraction")
    return fit_idx, val_idx


def _train_epochs(
    feats: Tensor,
    flip_feats: Tensor | None,
    labels: Tensor,
    *,
    num_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str | torch.device,
) -> Iterator[tuple[int, float, nn.Module]]:
    """Train a fresh seeded head; after each epoch yield (1-based epoch, mean train loss, head in eval mode)."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    generator = torch.Generator().manual_seed(seed)
    head = _new_head(feats.shape[1], num_classes, generator, device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    x = feats.detach().to(device, torch.float32)
    x_flip = None if flip_feats is None else flip_feats.detach().to(device, torch.float32)
    y = labels.detach().to(device, torch.long)
    n = len(y)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        head.train()
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample (the released loader would crash here)
                continue
            idx_d = idx.to(device)
            batch = x[idx_d]
            if x_flip is not None:
                batch = torch.where(flip[idx].to(device)[:, None], x_flip[idx_d], batch)
            loss = F.cross_entropy(head(batch), y[idx_d])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        head.eval()
        yield epoch, total / max(seen, 1), head


def _new_head(dim: int, num_classes: int, generator: torch.Generator, device: str | torch.device) -> nn.Sequential:
    """BatchNorm1d(dim) -> Linear(dim, num_classes, bias=False), the linear layer drawn from `generator`."""
    linear = seeded_linear(dim, num_classes, bias=False, generator=generator, device=device)
    return nn.Sequential(nn.BatchNorm1d(dim, device=device), linear)


def _predict(head: nn.Module, x: Tensor) -> Tensor:
    """Argmax classes of a head in eval mode."""
    with torch.no_grad():
        return head(x).argmax(1)


def _snapshot(head: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the head's state."""
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def _check_labels(labels: Tensor, num_classes: int, name: str) -> None:
    """Raise unless every class in `labels` lies in [0, num_classes)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def _check_inputs(
    train_feats: Tensor,
    train_flip_feats: Tensor | None,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
) -> None:
    """Check shapes, finiteness and label ranges of a probe's inputs."""
    named = {"train_feats": train_feats, "test_feats": test_feats}
    if train_flip_feats is not None:
        named["train_flip_feats"] = train_flip_feats
        if train_flip_feats.shape != train_feats.shape:
            raise ValueError(f"train_flip_feats {tuple(train_flip_feats.shape)} must match train_feats "
                             f"{tuple(train_feats.shape)}")
    for name, feats in named.items():
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) tensor, got {tuple(feats.shape)}")
        if not torch.isfinite(feats).all():
            raise ValueError(f"{name} contains NaN or Inf")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train and test feature sizes differ: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    for name, feats, labels in (("train", train_feats, train_labels), ("test", test_feats, test_labels)):
        if labels.shape != (feats.shape[0],):
            raise ValueError(f"{name}_labels must be ({feats.shape[0]},), got {tuple(labels.shape)}")
        _check_labels(labels.detach().to("cpu", torch.long), num_classes, f"{name}_labels")

"""Facial expression recognition benchmark: the paper's FER feature under a linear probe (RAF-DB, AffectNet, or a
labelled folder).

Every image gets the FER feature (`LatentFace.features(protocol="fer")`: ``[texture expression, texture, shape
expression, shape]``), extracted with `latentface.extract.encode_records` into a feature cache (``--cache-dir``):
the training images and their horizontal flips (the released probe's training-time flip augmentation picks the
feature of the image or of its flip with probability 0.5), and the test images. A re-run reuses the cached
features; a killed run resumes from its finished batches. Images that cannot be read (corrupt, truncated, empty,
too small) are skipped, counted and listed with the reason; they never stop the run.

Then the linear probe (`latentface.eval.fer_probe`: BatchNorm1d -> Linear without bias, cross-entropy, Adam on the
head only):

* ``--protocol released`` (default): as the official ``expr_test.py``: ``--epochs`` 20, ``--lr`` 1e-3, batch 32
  (RAF-DB, folders) or 128 (AffectNet), test accuracy after every epoch, and the *best test epoch* is reported
  (the released checkpointing selects on the test set), beside the last epoch;
* ``--protocol clean``: the same head and training, with (learning rate, epoch) selected on a stratified
  validation split of the training set (``--val-fraction``) over ``--lrs``; the test set is scored once.

Data (`latentface.data.expressions`):

* ``--dataset rafdb``: RAF-DB basic, 7 classes, split from the file-name prefix;
* ``--dataset affectnet``: the manually annotated set, 8 classes, face box from the CSV, training set thinned as
  released (``--no-thin`` keeps every row), official validation set as test; ``--pose-list FILE`` restricts the
  test set to a head-pose list (the official ``datasets/pose_30_affectnet_list.txt`` / ``pose_45``);
* ``--dataset folder``: ``DATA_ROOT/{train,test}/<class>/<image>``.

The markdown table goes to stdout, progress to stderr, and the JSON report (machine, settings, data, skipped
images, extraction, results, timing) to ``--output``, written atomically; ``--figures DIR`` adds the confusion
matrix as PNG. Examples::

    python benchmarks/fer.py --dataset rafdb --data-root /data/RAF-DB --weights latentface-official
    python benchmarks/fer.py --dataset affectnet --data-root /data/AffectNet --pose-list pose_30_affectnet_list.txt
    python benchmarks/fer.py --dataset folder --data-root my_faces --protocol clean --figures figures/
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from feature_cache import default_cache_dir, extract, load_feature_model, skipped_rows, throughput
from harness import ScriptError, publish, reports_errors, run

from latentface.data.expressions import ExpressionSet, read_affectnet, read_labelled_folder, read_rafdb
from latentface.errors import WeightsError
from latentface.eval.fer_probe import DEFAULT_LRS, train_clean_probe, train_released_probe
from latentface.eval.plots import save_confusion_matrix

DEFAULT_WEIGHTS = "synthfaces-tiny"
DATASETS = ("rafdb", "affectnet", "folder")
PROTOCOLS = ("released", "clean")
PROBE_BATCH = {"rafdb": 32, "affectnet": 128, "folder": 32}
"""The released probe's batch size per dataset (folders: RAF-DB's)."""


class DataError(ScriptError):
    """The dataset cannot be read or leaves too little to train and test on."""


def subset_name(pose_list: Path | None) -> str | None:
    """Name of the AffectNet test subset of a pose list: ``pose-30`` for ``pose_30_affectnet_list.txt``, else the
    file's stem; None without a list."""
    if pose_list is None:
        return None
    match = re.search(r"pose[_-]?(\d+)", pose_list.stem)
    return f"pose-{match.group(1)}" if match else pose_list.stem


def read_splits(args: argparse.Namespace) -> tuple[ExpressionSet, ExpressionSet]:
    """(train, test) sets of the requested dataset.

    Raises:
        DataError: a reader's error (missing files, malformed lists), with the reader's message.
    """
    try:
        if args.dataset == "rafdb":
            return read_rafdb(args.data_root, "train"), read_rafdb(args.data_root, "test")
        if args.dataset == "affectnet":
            return (read_affectnet(args.data_root, "train", thin=not args.no_thin),
                    read_affectnet(args.data_root, "test", pose_list=args.pose_list))
        return read_labelled_folder(args.data_root, "train"), read_labelled_folder(args.data_root, "test")
    except (OSError, ValueError) as err:
        raise DataError(str(err)) from err


def run_probe(args: argparse.Namespace, train_x: torch.Tensor, train_flip: torch.Tensor, train_y: torch.Tensor,
              test_x: torch.Tensor, test_y: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Train and score the probe of ``args.protocol``; returns the JSON-ready results."""
    common = {"num_classes": num_classes, "epochs": args.epochs, "batch_size": args.probe_batch_size,
              "seed": args.seed, "device": args.device}
    if args.protocol == "released":
        out = train_released_probe(train_x, train_flip, train_y, test_x, test_y, lr=args.lr, **common)
    else:
        out = train_clean_probe(train_x, train_flip, train_y, test_x, test_y, lrs=args.lrs,
                                val_fraction=args.val_fraction, **common)
    return {**out.report.to_dict(), "last_epoch": out.last_epoch.to_dict(), "history": [dict(h) for h in out.history]}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """Summary, results and per-class table, as markdown."""
    s, d, r, m = report["settings"], report["data"], report["results"], report["machine"]
    counts = report["counts"]
    selection = r["selection"]
    name = d["name"] + (f" ({d['subset']})" if d["subset"] else "")
    rate = report["extraction"]["images_per_s"]
    lines = [
        f"**FER** on {name}, protocol {s['protocol']}; **weights** {s['weights']}.",
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable CPUs, torch {m['torch']}"
         + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; device {s['device']}."),
        (f"Train {counts['train']['used']} images ({counts['train']['skipped']} skipped), test "
         f"{counts['test']['used']} ({counts['test']['skipped']} skipped). Feature extraction "
         + (f"{rate:.1f} images/s" if rate is not None else "reused from the cache")
         + f", {report['timing']['extraction_seconds']:.1f} s; probe {report['timing']['probe_seconds']:.1f} s."),
        "",
        "| model | rule | lr | epoch | accuracy (%) | macro-F1 (%) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in (r, r["last_epoch"]):
        sel = row["selection"]
        lines.append(f"| {'selected' if row is r else 'last epoch'} | {sel['rule']} | {sel['lr']:g} | {sel['epoch']} "
                     f"| {_pct(row['accuracy'])} | {_pct(row['macro_f1'])} |")
    lines += ["", "| class | test images | accuracy (%) |", "|---|---:|---:|"]
    support = np.asarray(r["confusion"]).sum(1)
    for cls, n, acc in zip(d["classes"], support, r["per_class_accuracy"], strict=True):
        lines.append(f"| {cls} | {int(n)} | {_pct(acc)} |")
    if selection.get("protocol") == "released":
        lines += ["", "Released protocol: the selected epoch is the best *test* epoch (the released quirk)."]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    p.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout")
    p.add_argument("--data-root", type=Path, required=True, help="dataset folder")
    p.add_argument("--pose-list", type=Path, default=None,
                   help="AffectNet only: restrict the test set to this head-pose list (default: none)")
    p.add_argument("--subset", default=None,
                   help="AffectNet only: name of the pose-list subset in reports and tables (default: 'pose-<N>' from "
                        "a file named pose_<N>_..., else the file's stem)")
    p.add_argument("--no-thin", action="store_true", help="AffectNet only: keep every training row (no thinning)")
    harness.add_model_options(p, weights=DEFAULT_WEIGHTS)
    p.add_argument("--batch-size", type=int, default=64, help="images per feature-extraction batch")
    p.add_argument("--seed", type=int, default=1234, help="seed of the RDM noise and of the probe")
    p.add_argument("--protocol", choices=PROTOCOLS, default="released",
                   help="released (best test epoch) or clean (validation-selected lr and epoch)")
    p.add_argument("--epochs", type=int, default=20, help="probe epochs (per learning rate for clean)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the released protocol")
    p.add_argument("--lrs", type=float, nargs="+", default=list(DEFAULT_LRS),
                   help="learning-rate grid of the clean protocol")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="clean protocol: fraction of each training class held out for selection")
    p.add_argument("--probe-batch-size", type=int, default=None,
                   help="probe batch size (default: the released 32 for RAF-DB and folders, 128 for AffectNet)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache (default: $LATENTFACE_FEATURE_CACHE, else ~/.cache/latentface/features)")
    p.add_argument("--figures", type=Path, default=None, help="folder for the confusion-matrix PNG (default: none)")
    harness.add_run_options(p, None, progress=True, output_help="JSON results file (default: "
                            "benchmarks/results/fer-<dataset>[-<subset>]-<protocol>-<host>.json)")
    args = p.parse_args(argv)
    if args.pose_list is not None and args.dataset != "affectnet":
        p.error("--pose-list applies to --dataset affectnet only")
    if args.subset is not None and args.pose_list is None:
        p.error("--subset names the --pose-list subset; pass --pose-list too")
    if args.no_thin and args.dataset != "affectnet":
        p.error("--no-thin applies to --dataset affectnet only")
    if min(args.batch_size, args.epochs) < 1 or args.lr <= 0 or min(args.lrs) <= 0:
        p.error("--batch-size and --epochs must be positive, --lr and --lrs above zero")
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must lie in (0, 1)")
    args.probe_batch_size = args.probe_batch_size or PROBE_BATCH[args.dataset]
    args.cache_dir = args.cache_dir or default_cache_dir()
    args.subset = args.subset or subset_name(args.pose_list)
    args.slug = args.dataset + (f"-{args.subset}" if args.subset else "")
    if args.output is None:
        args.output = harness.result_path(f"fer-{args.slug}-{args.protocol}")
    return args


@reports_errors(WeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = harness.select_devices([args.device], args.threads)[0]
    model = load_feature_model(args.weights, device, "FER")
    train, test = read_splits(args)
    common = {"protocol": "fer", "batch_size": args.batch_size, "seed": args.seed, "weights_name": args.weights,
              "progress": not args.no_progress}
    jobs = {"train": (train, False), "train_flip": (train, True), "test": (test, False)}
    part = {"train": "train-image", "train_flip": "train-flip", "test": "test"}
    done = {name: extract(model, data.records, args.cache_dir, f"fer-{args.dataset}-{part[name]}", flip=flip,
                          **common)
            for name, (data, flip) in jobs.items()}
    train_ok = done["train"].ok & done["train_flip"].ok
    test_ok = done["test"].ok
    skipped = (skipped_rows([r.path for r in train.records], done["train"].status, "train")
               + skipped_rows([r.path for r in test.records], done["test"].status, "test"))
    if train_ok.sum() < 2 or not test_ok.any():
        example = f"; e.g. {skipped[0]['file']}: {skipped[0]['reason']}" if skipped else ""
        raise DataError(f"too few readable images: {int(train_ok.sum())} training and {int(test_ok.sum())} test "
                        f"images ({len(skipped)} skipped{example})")
    extraction_seconds = sum(e.seconds for e in done.values())

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    probe_start = time.perf_counter()
    try:
        results = run_probe(args, tensor(done["train"].features[train_ok]),
                            tensor(done["train_flip"].features[train_ok]), tensor(train.labels[train_ok]),
                            tensor(done["test"].features[test_ok]), tensor(test.labels[test_ok]), len(train.classes))
    except ValueError as err:
        raise DataError(f"the probe cannot run on this data: {err}") from err
    probe_seconds = time.perf_counter() - probe_start
    figures = {}
    if args.figures is not None:
        title = f"{train.name}{f' {args.subset}' if args.subset else ''}, {args.protocol}"
        figures["confusion_matrix"] = str(save_confusion_matrix(
            args.figures / f"fer-{args.slug}-{args.protocol}-confusion.png", torch.tensor(results["confusion"]),
            train.classes, title=title))
    report: dict[str, Any] = {
        "benchmark": "fer",
        "machine": harness.machine_info([device]),
        "settings": {
            "weights": args.weights, "device": str(device), "batch_size": args.batch_size, "seed": args.seed,
            "protocol": args.protocol, "epochs": args.epochs, "lr": args.lr if args.protocol == "released" else None,
            "lrs": args.lrs if args.protocol == "clean" else None,
            "val_fraction": args.val_fraction if args.protocol == "clean" else None,
            "probe_batch_size": args.probe_batch_size, "feature": "fer", "flip_augmentation": True,
            "cache_dir": str(args.cache_dir), "sampler": model.config.sampler,
            "sampling_steps": model.config.sampling_steps,
        },
        "model": harness.model_record(model, feature_dim=model.num_features("fer")),
        "data": {
            "dataset": args.dataset, "name": train.name, "subset": args.subset, "root": str(args.data_root),
            "pose_list": None if args.pose_list is None else str(args.pose_list),
            "thin": args.dataset == "affectnet" and not args.no_thin, "classes": list(train.classes),
            "train_source": train.source, "test_source": test.source,
        },
        "counts": {
            "train": {"listed": len(train), "used": int(train_ok.sum()), "skipped": int((~train_ok).sum())},
            "test": {"listed": len(test), "used": int(test_ok.sum()), "skipped": int((~test_ok).sum())},
        },
        "skipped": skipped,
        "extraction": {**{name: e.summary() for name, e in done.items()},
                       "images_per_s": throughput(list(done.values())), "seconds": extraction_seconds},
        "results": results,
        "figures": figures,
        "timing": {"extraction_seconds": extraction_seconds, "probe_seconds": probe_seconds},
    }
    report["total_seconds"] = report["timing"]["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

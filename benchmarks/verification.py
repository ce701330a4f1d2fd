"""Face verification benchmark: the paper's verification feature on LFW or SLLFW pairs, 10 folds.

Every image the pair list uses gets the verification feature once (`LatentFace.features(protocol="verification")`,
the released definition: ``[texture identity, texture, shape identity, shape]`` of the image and of its horizontal
flip, 2048-d for the released model), extracted with `latentface.extract.encode_records` into a feature cache
(``--cache-dir``): a re-run reuses it, a killed run resumes. An image that cannot be read is skipped and reported;
every pair that uses it is dropped and counted (its fold keeps its other pairs).

Protocols (`latentface.eval.verification`), on the 10 folds of the pair list (consecutive blocks of 600 pairs):

* ``a`` (official ``identity_test.py``, 2023): cosine similarity, a threshold swept over [-1, 1) in steps of
  0.005 on the nine training folds, applied to the held-out fold;
* ``b`` (2024 code): per fold a linear classifier on ``[|f1 - f2|, |f1 + f2|, |f1 * f2|]``, Adam ``--lr`` 1e-4,
  ``--epochs`` 300. By default each epoch runs over all training pairs in batches of ``--pair-batch-size``;
  ``--released-quirk`` trains each epoch on one batch of 128 random training pairs, as the released loop does.

Reported per protocol: mean +- standard deviation of the fold accuracies (population std, as ``numpy.std``), every
fold's accuracy (and threshold, for A), and the ROC AUC of the out-of-fold scores; ``--figures DIR`` adds the ROC
curves as PNG. The markdown table goes to stdout, progress to stderr, the JSON report to ``--output`` (atomic).
Examples::

    python benchmarks/verification.py --dataset lfw --data-root /data/lfw --weights latentface-official
    python benchmarks/verification.py --dataset sllfw --data-root /data/lfw --protocol b --released-quirk
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from feature_cache import default_cache_dir, extract, load_feature_model, skipped_rows, throughput
from harness import ScriptError, publish, reports_errors, run

from latentface.data.pairs import PairSet, read_lfw_pairs, read_sllfw_pairs
from latentface.data.records import ImageRecord
from latentface.errors import WeightsError
from latentface.eval.plots import save_roc_curve
from latentface.eval.verification import (
    VerificationReport,
    cosine_threshold_protocol,
    pair_classifier_protocol,
    roc_curve,
)

DEFAULT_WEIGHTS = "synthfaces-tiny"
DATASETS = {"lfw": read_lfw_pairs, "sllfw": read_sllfw_pairs}
PROTOCOL_CHOICES = {"a": ("a",), "b": ("b",), "both": ("a", "b")}
PROTOCOL_NAMES = {"a": "A: cosine threshold (2023 code)", "b": "B: pair classifier (2024 code)"}


def kept_pairs(pairs: PairSet, ok: np.ndarray) -> np.ndarray:
    """(N,) bool: the pairs whose two images were both encoded."""
    return ok[pairs.pairs[:, 0]] & ok[pairs.pairs[:, 1]]


def run_protocol(name: str, args: argparse.Namespace, f1: torch.Tensor, f2: torch.Tensor, same: torch.Tensor,
                 fold: torch.Tensor) -> VerificationReport:
    """Protocol ``"a"`` or ``"b"`` on the kept pairs."""
    if name == "a":
        return cosine_threshold_protocol(f1, f2, same, fold)
    return pair_classifier_protocol(f1, f2, same, fold, released_quirk=args.released_quirk, epochs=args.epochs,
                                    lr=args.lr, batch_size=args.pair_batch_size, seed=args.seed, device=args.device)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """Summary and results table, as markdown."""
    s, d, m, c = report["settings"], report["data"], report["machine"], report["counts"]
    rate = report["extraction"]["images_per_s"]
    lines = [
        f"**Verification** on {d['name']}; **weights** {s['weights']}.",
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable CPUs, torch {m['torch']}"
         + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; device {s['device']}."),
        (f"{c['pairs_used']} of {c['pairs_listed']} pairs ({c['pairs_dropped']} dropped for {c['images_skipped']} "
         f"unreadable images), {c['images']} images. Feature extraction "
         + (f"{rate:.1f} images/s" if rate is not None else "reused from the cache")
         + f", {report['timing']['extraction_seconds']:.1f} s."),
        "",
        "| protocol | accuracy (%) mean ± std | AUC (%) | folds |",
        "|---|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        label = PROTOCOL_NAMES[name] + (", released quirk" if name == "b" and s["released_quirk"] else "")
        lines.append(f"| {label} | {_pct(r['mean_accuracy'])} ± {_pct(r['std_accuracy'])} | {_pct(r['auc'])} | "
                     f"{len(r['fold_accuracies'])} |")
    lines += ["", "| fold | " + " | ".join(f"protocol {n.upper()} (%)" for n in report["results"]) + " |",
              "|---:|" + "---:|" * len(report["results"])]
    folds = zip(*(r["fold_accuracies"] for r in report["results"].values()), strict=True)
    for k, accs in enumerate(folds, start=1):
        lines.append(f"| {k} | " + " | ".join(_pct(a) for a in accs) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    p.add_argument("--dataset", choices=tuple(DATASETS), required=True, help="pair list layout")
    p.add_argument("--data-root", type=Path, required=True, help="folder with lfw_crop/ and the pair list")
    p.add_argument("--pairs-file", type=Path, default=None,
                   help="pair list (default: DATA_ROOT/pairs.txt for lfw, DATA_ROOT/pair_SLLFW.txt for sllfw)")
    p.add_argument("--protocol", choices=tuple(PROTOCOL_CHOICES), default="both", help="verification protocol(s)")
    p.add_argument("--released-quirk", action="store_true",
                   help="protocol B: one batch of random training pairs per epoch, as released")
    p.add_argument("--epochs", type=int, default=300, help="protocol B: epochs per fold")
    p.add_argument("--lr", type=float, default=1e-4, help="protocol B: Adam learning rate")
    p.add_argument("--pair-batch-size", type=int, default=128, help="protocol B: pairs per step")
    harness.add_model_options(p, weights=DEFAULT_WEIGHTS)
    p.add_argument("--batch-size", type=int, default=64, help="images per feature-extraction batch")
    p.add_argument("--seed", type=int, default=1234, help="seed of the RDM noise and of protocol B")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache (default: $LATENTFACE_FEATURE_CACHE, else ~/.cache/latentface/features)")
    p.add_argument("--figures", type=Path, default=None, help="folder for the ROC PNGs (default: none)")
    harness.add_run_options(p, None, progress=True,
                            output_help="JSON results file (default: benchmarks/results/verification-<dataset>-<host>"
                                        ".json)")
    args = p.parse_args(argv)
    if min(args.batch_size, args.epochs, args.pair_batch_size) < 1 or args.lr <= 0:
        p.error("--batch-size, --epochs and --pair-batch-size must be positive, --lr above zero")
    args.cache_dir = args.cache_dir or default_cache_dir()
    if args.output is None:
        args.output = harness.result_path(f"verification-{args.dataset}")
    return args


@reports_errors(WeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = harness.select_devices([args.device], args.threads)[0]
    model = load_feature_model(args.weights, device, "verification")
    try:
        pairs = DATASETS[args.dataset](args.data_root, args.pairs_file)
    except (OSError, ValueError) as err:
        raise ScriptError(str(err)) from err
    done = extract(model, [ImageRecord(p) for p in pairs.images], args.cache_dir, f"verification-{args.dataset}",
                   protocol="verification", batch_size=args.batch_size, seed=args.seed, weights_name=args.weights,
                   progress=not args.no_progress)
    keep = kept_pairs(pairs, done.ok)
    same, fold = pairs.same[keep], pairs.fold[keep]
    problems = [f"fold {k + 1} has no pairs left" for k in np.unique(pairs.fold) if not (fold == k).any()]
    if len(np.unique(same)) < 2:
        problems.append("the kept pairs are all of one kind (same or different)")
    if problems:
        raise ScriptError(f"too many pairs dropped for unreadable images ({int((~keep).sum())} of {len(pairs)}): "
                          + "; ".join(problems))
    feats = torch.from_numpy(done.features)
    index = torch.from_numpy(pairs.pairs[keep])
    f1, f2 = feats[index[:, 0]], feats[index[:, 1]]
    same_t, fold_t = torch.from_numpy(same.astype(np.int64)), torch.from_numpy(fold)
    results: dict[str, Any] = {}
    figures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in PROTOCOL_CHOICES[args.protocol]:
        t0 = time.perf_counter()
        out = run_protocol(name, args, f1, f2, same_t, fold_t)
        seconds[name] = time.perf_counter() - t0
        results[name] = out.to_dict()
        if args.figures is not None:
            fpr, tpr, _ = roc_curve(out.scores, same_t)
            figures[f"roc_{name}"] = str(save_roc_curve(
                args.figures / f"verification-{args.dataset}-{name}-roc.png", fpr, tpr,
                f"{pairs.name} protocol {name.upper()}, AUC {out.auc:.3f}"))
    report: dict[str, Any] = {
        "benchmark": "verification",
        "machine": harness.machine_info([device]),
        "settings": {
            "weights": args.weights, "device": str(device), "batch_size": args.batch_size, "seed": args.seed,
            "protocols": list(PROTOCOL_CHOICES[args.protocol]), "released_quirk": args.released_quirk,
            "epochs": args.epochs, "lr": args.lr, "pair_batch_size": args.pair_batch_size, "feature": "verification",
            "cache_dir": str(args.cache_dir), "sampler": model.config.sampler,
            "sampling_steps": model.config.sampling_steps,
        },
        "model": harness.model_record(model, feature_dim=model.num_features("verification")),
        "data": {"dataset": args.dataset, "name": pairs.name, "root": str(args.data_root), "source": pairs.source},
        "counts": {
            "images": len(pairs.images), "images_skipped": int((~done.ok).sum()), "pairs_listed": len(pairs),
            "pairs_used": int(keep.sum()), "pairs_dropped": int((~keep).sum()),
            "pairs_per_fold": [int((fold == k).sum()) for k in np.unique(pairs.fold)],
        },
        "skipped": skipped_rows(pairs.images, done.status, "images"),
        "extraction": {"images": done.summary(), "images_per_s": throughput([done]), "seconds": done.seconds},
        "results": results,
        "figures": figures,
        "timing": {"extraction_seconds": done.seconds, "protocol_seconds": seconds},
    }
    report["total_seconds"] = report["timing"]["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

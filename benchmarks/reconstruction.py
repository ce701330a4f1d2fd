"""Depth reconstruction benchmark: SIDE and MAD of a model's input-view depth, beside Unsup3D's two baselines.

For every image the model's depth in the input view (``model.render(codes, view="input")``: ``.depth`` is the
prediction, ``.mask`` the pixels it covers) is scored against the ground-truth depth with Unsup3D's metrics
(`latentface.eval`): SIDE, the scale-invariant depth error, and MAD, the mean angle deviation of the normals
computed from the two depths (degrees). The evaluation mask of an image is the ground-truth face mask (GT
foreground) eroded by one pixel, times the eroded prediction mask, as in Unsup3D's test code.

The same scoring (`score_depth`) is applied to two baselines that Unsup3D reports, each over the GT face mask
eroded by one pixel (a baseline covers every pixel):

* ``constant_depth``: a fronto-parallel plane (SIDE does not depend on its depth: scale invariance);
* ``mean_depth``: the average ground-truth depth map of the evaluated set (every pixel, background included),
  predicted for every image.

The report also gives the model's means over the mean-depth baseline's (``side_ratio``, ``mad_ratio``), the
share of images where the model's MAD is below the baseline's on the same image (``mad_better``), the relief
scale of every method (`latentface.eval.relief`: per image the least-squares slope of predicted on true depth over
the evaluation mask, 1 = the true relief; under this near-orthographic camera a relief predicted too deep goes with
head angles predicted too small), the normal slope of every method (`latentface.eval.normal_slope`: the same slope
for the z of the normals, how directly the surface faces the camera; below 1 for a surface that turns away less than
the true one, as a smoothed depth map does), and the model's
SIDE and MAD of every image in data order (``per_image``; null for an image left out), which pin the report to the
weights: the tests re-measure the first images with the bundled weights and compare. Where the
ground truth holds the head pose and light (SynthFaces, generated or exported), the model's predicted yaw, pitch
and roll (degrees), ambient and diffuse strengths and light direction (x, y of ``normalise([x, y, 1])``) are fitted
against the true ones (`latentface.eval.pose_light_fits`: slope and correlation; slope 1 = the true scale).

Data: SynthFaces rendered on the fly (default: the test split, ``--identities`` x ``--samples-per-identity``
images, world seed ``--seed``, at the model's image size), or a folder given by ``--data-root``:

    DIR/<split>/**/<name>.png|.jpg|.jpeg     the input image (any size: the model preprocesses it)
    DIR/<split>/**/<name>.npz                its ground truth, beside it:
        depth      (H, W) float  depth of the input view (distance along the camera axis; positive in the face)
        face_mask  (H, W) bool   the GT foreground the metrics average over
        pose       (5,) float    optional: yaw, pitch, roll (degrees), shift x, y (with ``light``: pose and light fits)
        light      (4,) float    optional: ambient, diffuse, light direction x, y

with H = W = the model's image size. A SynthFaces export (``latentface synth``) has this layout, and so must a
user's own data; other keys in the ``.npz`` are ignored. Frames are read in sorted path order.

Normals for MAD are computed from depth with the model's field of view (``--fov`` to override it for data
rendered with another camera). By default MAD is Unsup3D's exact definition (normals normalised with an epsilon,
not quite unit length: identical depths already give about 6.5 degrees at 64 px); ``--renormalize-normals``
scores unit normals instead. The model's numbers and both baselines are mean and standard deviation over images;
an image whose evaluation mask is empty is left out and counted (``excluded``).

The markdown table goes to stdout, progress to stderr, and the JSON report (machine, settings, results, wall
time) to ``--output``, written atomically. Examples::

    python benchmarks/reconstruction.py                                    # bundled synthfaces-tiny weights
    python benchmarks/reconstruction.py --weights runs/stage1/final --identities 200 --samples-per-identity 10
    python benchmarks/reconstruction.py --weights latentface-official --data-root synthfaces --split test
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from harness import ScriptError, finite, load_model, publish, reports_errors, run
from torch import Tensor
from tqdm import tqdm

from latentface import FaceCodes, LatentFace
from latentface.data.synthfaces import SPLITS, SynthConfig, SynthFacesImages
from latentface.errors import WeightsError
from latentface.eval import (
    DepthMetrics,
    LinearFit,
    constant_depth_baseline,
    depth_metrics,
    evaluation_mask,
    mean_depth_baseline,
    mean_gt_depth,
    pose_light_fits,
    summarize,
)

DEFAULT_WEIGHTS = "synthfaces-tiny"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
METRICS = ("side", "mad")
METHODS = ("model", "mean_depth", "constant_depth")
"""Rows of the results, in table order."""
LABELS = {"model": "model", "mean_depth": "mean GT depth (baseline)", "constant_depth": "constant depth (baseline)"}


class DataError(ScriptError):
    """The data folder is missing, empty or does not follow the documented layout."""


def score_depth(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor,
    pred_mask: Tensor | None = None,
    *,
    fov: float,
    renormalize: bool = False,
) -> DepthMetrics:
    """Unsup3D's per-image depth metrics over ``erode(gt_mask) & erode(pred_mask)``; the model and both baselines
    are scored by this function.

    Args:
        pred_depth: (B, H, W) predicted input-view depth.
        gt_depth: (B, H, W) ground-truth input-view depth.
        gt_mask: (B, H, W) bool GT foreground (the face mask).
        pred_mask: (B, H, W) bool valid prediction (the rendering's mask); None: valid everywhere (baselines).
        fov: field of view in degrees, for the normals computed from depth (MAD).
        renormalize: MAD with unit normals (False: Unsup3D's definition).

    Returns:
        `DepthMetrics` (SIDE, MAD, MAE, MSE, relief, normal slope, pixels per image); NaN for an image with an
        empty mask.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty masks: NaN, counted by `summarize`
        return depth_metrics(pred_depth.float(), gt_depth.float(), gt_mask.bool(),
                             None if pred_mask is None else pred_mask.bool(), fov=fov, renormalize=renormalize)


@dataclass
class Batch:
    """Images to encode (a (B, 3, S, S) tensor in [0, 1] or a list of file paths) with their ground truth: depth,
    face mask, and when known the pose (B, 5: yaw, pitch, roll in degrees, shifts) and light (B, 4)."""

    images: Tensor | list[Path]
    depth: Tensor
    face_mask: Tensor
    pose: Tensor | None = None
    light: Tensor | None = None


def folder_frames(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, ground truth) paths under ``root/split``, sorted; every image must have its ``.npz``."""
    base = root / split
    if not base.is_dir():
        raise DataError(f"{str(base)!r} is not a folder: --data-root must hold a folder per split "
                        f"(<root>/<split>/**/<name>.png with <name>.npz beside it)")
    images = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {str(base)!r}")
    missing = [p for p in images if not p.with_suffix(".npz").is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) have no ground-truth .npz beside them, e.g. "
                        f"{str(missing[0].with_suffix('.npz'))!r} (keys 'depth' and 'face_mask' expected)")
    return [(p, p.with_suffix(".npz")) for p in images]


@dataclass
class GroundTruth:
    """One frame's ground truth read from its ``.npz``: depth (S, S), face mask (S, S), optional pose (5,) and
    light (4,) (both or neither)."""

    depth: Tensor
    face_mask: Tensor
    pose: Tensor | None
    light: Tensor | None


def read_ground_truth(path: Path, size: int) -> GroundTruth:
    """The ground truth of one ``.npz``, checked."""
    try:
        with np.load(path) as data:
            missing = [k for k in ("depth", "face_mask") if k not in data.files]
            if missing:
                raise DataError(f"{str(path)!r} lacks {missing} (it has {sorted(data.files)}); expected 'depth' "
                                f"(H, W) float and 'face_mask' (H, W) bool")
            depth = torch.from_numpy(np.asarray(data["depth"], dtype=np.float32))
            face_mask = torch.from_numpy(np.asarray(data["face_mask"]).astype(bool))
            factors = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)).reshape(-1)
                       for k in ("pose", "light") if k in data.files}
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read ground truth {str(path)!r}: {err}") from err
    for key, value in (("depth", depth), ("face_mask", face_mask)):
        if tuple(value.shape) != (size, size):
            raise DataError(f"{str(path)!r}: {key} has shape {tuple(value.shape)}, expected ({size}, {size}) "
                            f"(the model's image size)")
    if not torch.isfinite(depth[face_mask]).all() or (depth[face_mask] <= 0).any():
        raise DataError(f"{str(path)!r}: depth must be finite and positive inside face_mask")
    sizes = {"pose": 5, "light": 4}
    for key, value in factors.items():
        if len(value) != sizes[key] or not value.isfinite().all():
            raise DataError(f"{str(path)!r}: {key} must hold {sizes[key]} finite values, got {value.tolist()}")
    if len(factors) != 2:
        factors = {}  # the fits need both
    return GroundTruth(depth, face_mask, factors.get("pose"), factors.get("light"))


def folder_batches(frames: Sequence[tuple[Path, Path]], size: int, batch_size: int) -> Iterator[Batch]:
    """Batches of a data folder (images as paths, decoded by the model's preprocessing)."""
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        truth = [read_ground_truth(npz, size) for _, npz in chunk]
        known = all(t.pose is not None for t in truth)
        yield Batch(images=[image for image, _ in chunk], depth=torch.stack([t.depth for t in truth]),
                    face_mask=torch.stack([t.face_mask for t in truth]),
                    pose=torch.stack([t.pose for t in truth]) if known else None,
                    light=torch.stack([t.light for t in truth]) if known else None)


def synth_batches(dataset: SynthFacesImages, batch_size: int) -> Iterator[Batch]:
    """Batches of SynthFaces rendered on the fly."""
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(range(start, min(start + batch_size, len(dataset))))
        yield Batch(images=batch.image, depth=batch.depth, face_mask=batch.face_mask,
                    pose=batch.factors.pose.stacked(), light=batch.factors.light.stacked())


@torch.no_grad()
def predict(model: LatentFace, images: Tensor | list[Path]) -> tuple[Tensor, Tensor, FaceCodes]:
    """Input-view depth (B, S, S), valid mask (B, S, S) and codes of the model, on the CPU."""
    codes = model.encode(images)
    view = model.render(codes, view="input")
    assert view.depth is not None and view.mask is not None
    return view.depth.float().cpu(), view.mask.cpu(), codes.cpu()


def evaluate(model: LatentFace, batches: Iterator[Batch], total: int, *, fov: float, renormalize: bool,
             constant: float, progress: bool = True) -> dict[str, Any]:
    """Score the model and the two baselines on every batch; returns per-method summaries and timings."""
    per_method: dict[str, list[DepthMetrics]] = {m: [] for m in METHODS}
    gt_kept: list[tuple[Tensor, Tensor]] = []
    model_seconds = 0.0
    coverage: list[Tensor] = []
    factors: dict[str, list[Tensor]] = {"view": [], "light": [], "true_pose": [], "true_light": []}
    with tqdm(total=total, unit="img", desc="reconstruction", disable=not progress, file=sys.stderr) as bar:
        for batch in batches:
            t0 = time.perf_counter()
            pred, pred_mask, codes = predict(model, batch.images)
            model_seconds += time.perf_counter() - t0
            if pred.shape != batch.depth.shape:
                raise DataError(f"the model predicts {tuple(pred.shape[1:])} depth maps, the ground truth is "
                                f"{tuple(batch.depth.shape[1:])}")
            per_method["model"].append(score_depth(pred, batch.depth, batch.face_mask, pred_mask, fov=fov,
                                                   renormalize=renormalize))
            flat = constant_depth_baseline(batch.depth, constant)
            per_method["constant_depth"].append(score_depth(flat, batch.depth, batch.face_mask, fov=fov,
                                                            renormalize=renormalize))
            # Share of the GT evaluation pixels that the model's valid mask keeps.
            gt_only = evaluation_mask(batch.depth, batch.face_mask.bool()).flatten(1).sum(1)
            coverage.append(per_method["model"][-1].pixels.double() / gt_only.clamp(min=1).double())
            gt_kept.append((batch.depth, batch.face_mask))
            if batch.pose is not None and batch.light is not None:
                for key, value in (("view", codes.pose), ("light", codes.light), ("true_pose", batch.pose),
                                   ("true_light", batch.light)):
                    factors[key].append(value.float())
            bar.update(len(batch.depth))
    if not gt_kept:
        raise DataError("no images to evaluate")
    mean_map = mean_gt_depth(d for d, _ in gt_kept)
    for depth, face_mask in gt_kept:
        per_method["mean_depth"].append(score_depth(mean_depth_baseline(depth, mean_map), depth, face_mask, fov=fov,
                                                    renormalize=renormalize))
    results: dict[str, Any] = {}
    for method, batches_metrics in per_method.items():
        results[method] = {name: _summary(summarize([getattr(b, name) for b in batches_metrics]))
                           for name in (*METRICS, "relief", "normal_slope")}
        pixels = torch.cat([b.pixels for b in batches_metrics]).double()
        results[method]["pixels_per_image"] = float(pixels.mean())
    results["model"]["mask_coverage"] = float(torch.cat(coverage).mean())
    results["model"] |= _against_mean_depth(per_method["model"], per_method["mean_depth"])
    results["model"]["per_image"] = per_image(per_method["model"])
    images = sum(len(d) for d, _ in gt_kept)
    counted = sum(len(v) for v in factors["view"])
    if counted == images and images >= 2:
        fits = pose_light_fits(torch.cat(factors["view"]), torch.cat(factors["light"]),
                               torch.cat(factors["true_pose"])[:, :3], torch.cat(factors["true_light"]), model.config)
        results["pose_light"] = {name: _fit(fit) for name, fit in fits.items()}
    else:
        results["pose_light"] = None
    return {"results": results, "num_images": images, "model_seconds": model_seconds,
            "model_images_per_s": images / model_seconds if model_seconds > 0 else None}


def _against_mean_depth(model: list[DepthMetrics], baseline: list[DepthMetrics]) -> dict[str, Any]:
    """The model's mean SIDE and MAD over the mean-depth baseline's, and the share of images (scored by both)
    where the model's MAD is the lower."""
    out: dict[str, Any] = {}
    for name in METRICS:
        ours, theirs = summarize([getattr(b, name) for b in model]), summarize([getattr(b, name) for b in baseline])
        out[f"{name}_ratio"] = finite(ours.mean / theirs.mean) if theirs.mean else None
    ours, theirs = torch.cat([b.mad for b in model]), torch.cat([b.mad for b in baseline])
    both = ours.isfinite() & theirs.isfinite()
    out["mad_better"] = float((ours[both] < theirs[both]).double().mean()) if both.any() else None
    return out


def per_image(metrics: list[DepthMetrics]) -> dict[str, list[float | None]]:
    """SIDE and MAD of every image, in data order (NaN, an empty evaluation mask, as None).

    Args:
        metrics: the per-batch metrics, in data order.

    Returns:
        ``{"side": [...], "mad": [...]}``, one value per image.
    """
    return {name: [finite(v) for v in torch.cat([getattr(b, name) for b in metrics]).double().tolist()]
            for name in METRICS}


def _fit(fit: LinearFit) -> dict[str, Any]:
    return {"slope": finite(fit.slope), "intercept": finite(fit.intercept), "r": finite(fit.r), "count": fit.count}


def _summary(s: Any) -> dict[str, Any]:
    """A `Summary` as JSON (NaN -> null)."""
    return {"mean": finite(s.mean), "std": finite(s.std), "count": s.count, "excluded": s.excluded}


def _pm(summary: dict[str, Any], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = summary["mean"], summary["std"]
    if mean is None:
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}" if std is not None else f"{mean * scale:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """Settings and the results table, as markdown."""
    m, s, r = report["machine"], report["settings"], report["results"]
    data = s["data"]
    if data["source"] == "synthfaces":
        where = (f"SynthFaces {data['split']} split generated on the fly ({data['identities']} identities x "
                 f"{data['samples_per_identity']} samples, seed {data['seed']}, {data['size']} px)")
    else:
        where = f"folder {data['root']} split {data['split']}"
    lines = [
        f"**Weights**: {s['weights']}. **Data**: {where}, {report['num_images']} images.",
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable CPUs, torch {m['torch']}"
         + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; device {s['device']}, batch {s['batch_size']}."),
        ("**Metrics**: Unsup3D's SIDE (x 10^-2, log depth) and MAD (degrees, "
         + ("unit normals" if s["renormalize_normals"] else "Unsup3D's normals")
         + f", fov {s['fov']}), mean ± std over images; mask = eroded GT face mask x eroded prediction mask "
         "(baselines: the GT face mask)."),
        "",
        "| method | SIDE (x10^-2) | MAD (deg) | relief | normal slope | images | pixels/image |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        row = r[method]
        label = LABELS[method] if method != "model" else f"model ({s['weights']})"
        count = row["side"]["count"]
        excluded = row["side"]["excluded"]
        images = f"{count}" + (f" (+{excluded} empty)" if excluded else "")
        lines.append(f"| {label} | {_pm(row['side'], 100)} | {_pm(row['mad'])} | {_pm(row['relief'])} | "
                     f"{_pm(row['normal_slope'])} | {images} | "
                     f"{row['pixels_per_image']:.0f} |")
    model = r["model"]
    if model["side_ratio"] is not None and model["mad_ratio"] is not None and model["mad_better"] is not None:
        lines += ["", f"Model over the mean-depth baseline: SIDE {model['side_ratio']:.2f}x, MAD "
                  f"{model['mad_ratio']:.2f}x; lower MAD than the baseline on {100 * model['mad_better']:.1f}% of "
                  "the images."]
    if r["pose_light"] is not None:
        lines += ["", "Predicted against true pose and light (least-squares slope, correlation r):", "",
                  "| factor | slope | r |", "|---|---:|---:|"]
        for name, fit in r["pose_light"].items():
            slope, corr = fit["slope"], fit["r"]
            lines.append(f"| {name} | {'n/a' if slope is None else f'{slope:.3f}'} | "
                         f"{'n/a' if corr is None else f'{corr:.3f}'} |")
    t = report["timing"]
    speed = f", model {t['model_images_per_s']:.0f} images/s" if t["model_images_per_s"] else ""
    lines += ["", f"Model's valid mask keeps {100 * model['mask_coverage']:.1f}% of the GT evaluation pixels. "
              f"Wall time {report['total_seconds']:.1f} s{speed}."]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    harness.add_model_options(p, weights=DEFAULT_WEIGHTS)
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder with <split>/**/<name>.png + <name>.npz (depth, face_mask) (default: SynthFaces "
                        "generated on the fly)")
    p.add_argument("--split", choices=SPLITS, default="test", help="split to evaluate")
    p.add_argument("--identities", type=int, default=100, help="SynthFaces identities (generated data)")
    p.add_argument("--samples-per-identity", type=int, default=10, help="SynthFaces images per identity")
    p.add_argument("--seed", type=int, default=0, help="SynthFaces world seed (generated data)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--renormalize-normals", action="store_true",
                   help="MAD with unit normals (default: Unsup3D's exact definition)")
    p.add_argument("--fov", type=float, default=None,
                   help="field of view of the ground truth's camera, for normals (default: the model's)")
    harness.add_run_options(p, "reconstruction", progress=True)
    args = p.parse_args(argv)
    if args.identities < 1 or args.samples_per_identity < 1 or args.batch_size < 1:
        p.error("--identities, --samples-per-identity and --batch-size must be positive")
    return args


@reports_errors(WeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = harness.select_devices([args.device], args.threads)[0]
    torch.manual_seed(args.seed)
    model = load_model(args.weights, device)
    size = model.config.image_size
    fov = model.config.fov if args.fov is None else args.fov
    constant = model.config.rotation_center_depth
    if args.data_root is None:
        dataset = SynthFacesImages(args.identities, args.samples_per_identity, split=args.split, seed=args.seed,
                                   config=SynthConfig(size=size))
        batches, total = synth_batches(dataset, args.batch_size), len(dataset)
        data = {"source": "synthfaces", "split": args.split, "identities": args.identities,
                "samples_per_identity": args.samples_per_identity, "seed": args.seed, "size": size}
    else:
        frames = folder_frames(args.data_root, args.split)
        batches, total = folder_batches(frames, size, args.batch_size), len(frames)
        data = {"source": "folder", "root": str(args.data_root), "split": args.split, "size": size}
    out = evaluate(model, batches, total, fov=fov, renormalize=args.renormalize_normals, constant=constant,
                   progress=not args.no_progress)
    report: dict[str, Any] = {
        "benchmark": "reconstruction",
        "machine": harness.machine_info([device]),
        "settings": {
            "weights": args.weights, "device": str(device), "batch_size": args.batch_size, "seed": args.seed,
            "data": data, "renormalize_normals": args.renormalize_normals, "fov": fov, "erode": True,
            "gt_mask": "face_mask", "pred_mask": "render(view='input').mask (model only)",
            "constant_depth": constant, "metrics": {"side": "log depth (Unsup3D SIE)", "mad": "degrees"},
        },
        "model": harness.model_record(model),
        "num_images": out["num_images"],
        "results": out["results"],
        "timing": {"model_seconds": out["model_seconds"], "model_images_per_s": out["model_images_per_s"]},
    }
    report["total_seconds"] = report["timing"]["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

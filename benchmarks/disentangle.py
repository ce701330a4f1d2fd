"""Disentanglement benchmark on SynthFaces: what each latent knows about identity and expression.

On SynthFaces test-split images whose identity and expression are known (``--identities`` N x
``--samples-per-identity`` K, each sample with its own random expression, pose and light), every image gets these
feature sets:

* ``raw_*``: the Stage-1 texture latent, shape latent, and both concatenated (`LatentFace.encode`);
* ``identity_*`` / ``expression_*``: the RDM's identity latents and the rest, texture / shape / both
  (`LatentFace.disentangle`);
* ``light`` and ``pose``: the Stage-1 light (4) and pose (6) codes;
* ``albedo_map`` and ``normal_map``: the model's canonical albedo and the normals of its canonical depth
  (`LatentFace.decode`), average-pooled to 16 px (3 x 16 x 16 values each): which of the two maps carries the
  expression; ``true_albedo_map`` and ``true_normal_map``: the same for the ground-truth maps (the reference);
* ``fer``: the paper's FER feature, ``[texture expression, texture, shape expression, shape]``.

The RDM start noise is drawn for the whole set at once from ``torch.Generator().manual_seed(seed)`` (texture noise
of every image, then shape noise), so every image gets the same noise whatever the batch size (results agree up
to float rounding), and ``fer`` equals ``model.features(images, protocol="fer",
generator=torch.Generator().manual_seed(seed))`` on the whole set, up to float rounding.

For each feature set:

* identity retrieval (`latentface.eval.identity_retrieval`): every image queries all others by cosine similarity;
  top-1 accuracy and mean average precision, beside their chance levels (the expected scores of a random
  ranking);
* a linear expression probe (`latentface.eval.linear_probe`, 7 classes), trained on the images of the first half
  of the identities and tested on the second half (identity-disjoint): accuracy and macro-F1, beside the chance
  levels (majority class of the training half, and 1 / classes). Its L2 weight is chosen by 4-fold cross-validation
  over the training identities (each fold holds out whole identities, as the test does: ``--probe-selection
  identity``, the default), or on a random fifth of each training class (``stratified``, which shares identities
  with the fit and so favours weights that memorise them; the selection of earlier reports).

With an RDM, the report also sums up the split (``split``): for texture, shape and both, the expression probe
accuracy of the identity and the expression latents minus that of the raw latents (the identity latents should carry
less expression, the expression latents as much as the raw ones), and the identity retrieval mAP of the identity
latents minus the raw latents' (run with ``--hold light,shift`` for retrieval across expressions with the light held).

Then the clip invariance diagnostic, after the released code's "Predict vs Origin distance": on ``--clips`` M
SynthFaces test clips of ``--frames`` F frames (one identity and light each, smoothly changing expression and
pose), for raw and identity latents (texture and shape): the mean cosine similarity of each frame's latent to the
mean latent of its clip, the mean distance to it, that distance relative to the mean latent norm, and the mean
distance to Stage 2's training target (the clip mean of the *raw* latents: "origin" for raw latents, "predict"
for identity latents). Identity latents should be the more invariant. Weights without an RDM (Stage 1 only):
the identity, expression and FER rows are skipped, and the report says so.

``--hold light,shift`` gives every image of an identity the light and 2D offset of its first image (any of
expression, pose, shift, light): the factors a clip holds fixed, so retrieval measures invariance to what varies
within a clip, which is all Stage 2 can learn to remove.

``--data-root`` reads a SynthFaces export (``latentface synth``; labels from its ``.npz`` files) instead: all
frames of ``--split`` are the images, its clips (if they have 2 frames or more) the clips.

The markdown tables go to stdout, progress to stderr, and the JSON report (machine, settings, results, wall
time) to ``--output``, written atomically. Examples::

    python benchmarks/disentangle.py                                       # bundled synthfaces-tiny weights
    python benchmarks/disentangle.py --weights runs/stage2/final --identities 100 --samples-per-identity 20
    python benchmarks/disentangle.py --weights latentface-official --data-root synthfaces --split test
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import harness
import torch
from harness import ScriptError, finite, load_model, publish, reports_errors, run
from torch import Tensor
from torch.nn import functional as F
from tqdm import tqdm

from latentface import FaceCodes, LatentFace, Latents
from latentface.data.synthfaces import (
    EXPRESSIONS,
    HOLDABLE,
    SPLITS,
    SynthConfig,
    SynthFacesClips,
    SynthFacesFolder,
    SynthFacesImages,
)
from latentface.errors import WeightsError
from latentface.eval import clip_invariance, identity_retrieval, linear_probe, probe_chance, retrieval_chance
from latentface.render import normals_from_depth

DEFAULT_WEIGHTS = "synthfaces-tiny"
FEATURE_SETS = (
    ("raw_texture", "raw texture latent", False),
    ("raw_shape", "raw shape latent", False),
    ("raw_both", "raw texture + shape", False),
    ("identity_texture", "identity texture (RDM)", True),
    ("identity_shape", "identity shape (RDM)", True),
    ("identity_both", "identity texture + shape (RDM)", True),
    ("expression_texture", "expression texture", True),
    ("expression_shape", "expression shape", True),
    ("expression_both", "expression texture + shape", True),
    ("light", "light code", False),
    ("pose", "pose code", False),
    ("albedo_map", "canonical albedo map (16 px)", False),
    ("normal_map", "canonical normal map (16 px)", False),
    ("true_albedo_map", "ground-truth albedo map (16 px)", False),
    ("true_normal_map", "ground-truth normal map (16 px)", False),
    ("fer", "FER feature (features(protocol='fer'))", True),
)
"""(name, label, needs the RDM), in table order."""
CLIP_LATENTS = (
    ("raw_texture", "raw texture", False),
    ("identity_texture", "identity texture (RDM)", True),
    ("raw_shape", "raw shape", False),
    ("identity_shape", "identity shape (RDM)", True),
)
MAP_SIZE = 16
"""Side of the pooled albedo and normal maps of the ``*_map`` feature sets."""
TRUE_MAPS = ("true_albedo_map", "true_normal_map")
"""The ground-truth map feature sets, gathered with the labels while the images are read."""
PROBE_VAL_FRACTION = 0.2
PROBE_FOLDS = 4
PROBE_SELECTIONS = ("identity", "stratified")
NO_RDM_NOTE = "the weights have no RDM (Stage 1 only): identity, expression and FER rows skipped"


class DataError(ScriptError):
    """The data folder cannot be used."""


# ---------------------------------------------------------------------------------------------------- features


@torch.no_grad()
def encode_all(model: LatentFace, batches: Iterator[Tensor], total: int, desc: str,
               progress: bool = True) -> FaceCodes:
    """Stage-1 codes of every image (batches of (B, 3, S, S) in [0, 1]), on the CPU."""
    parts = []
    with tqdm(total=total, unit="img", desc=desc, disable=not progress, file=sys.stderr) as bar:
        for images in batches:
            parts.append(model.encode(images).cpu())
            bar.update(len(images))
    return FaceCodes.cat(parts)


@torch.no_grad()
def disentangle_all(model: LatentFace, codes: FaceCodes, seed: int, batch_size: int) -> tuple[Latents, Latents]:
    """(identity, expression) latents of every item, with the start noise of
    ``model.disentangle(codes, generator=torch.Generator().manual_seed(seed))`` on the whole set."""
    generator = torch.Generator().manual_seed(seed)
    noise = Latents(texture=torch.randn(codes.texture.shape, generator=generator),
                    shape=torch.randn(codes.shape.shape, generator=generator))
    identity, expression = [], []
    for start in range(0, len(codes), batch_size):
        part = slice(start, start + batch_size)
        z = Latents(texture=codes.texture[part], shape=codes.shape[part]).to(model.device)
        out = model.disentangle(z, noise=noise[part].to(model.device))
        identity.append(out.identity.cpu())
        expression.append(out.expression.cpu())
    return Latents.cat(identity), Latents.cat(expression)


def pooled_map(maps: Tensor) -> Tensor:
    """(B, C, S, S) maps average-pooled to `MAP_SIZE` px and flattened: (B, C * MAP_SIZE ** 2)."""
    return F.adaptive_avg_pool2d(maps.float(), MAP_SIZE).flatten(1)


@torch.no_grad()
def canonical_maps(model: LatentFace, codes: FaceCodes, batch_size: int) -> tuple[Tensor, Tensor]:
    """Pooled canonical albedo and canonical-depth normals (`pooled_map`) of every item, on the CPU."""
    albedo, normal = [], []
    for start in range(0, len(codes), batch_size):
        part = codes[start:start + batch_size].to(model.device)
        a, depth = model.decode(part)
        albedo.append(pooled_map(a).cpu())
        normal.append(pooled_map(normals_from_depth(depth, model.config.fov).permute(0, 3, 1, 2)).cpu())
    return torch.cat(albedo), torch.cat(normal)


def feature_sets(model: LatentFace, codes: FaceCodes, seed: int, batch_size: int,
                 truth: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Every feature set of `FEATURE_SETS` ((N, D) float32 tensors); the RDM-based ones only when there is an RDM,
    the ground-truth maps only when `truth` has them (`TRUE_MAPS`, each a `pooled_map`)."""
    albedo_map, normal_map = canonical_maps(model, codes, batch_size)
    feats = {
        "raw_texture": codes.texture, "raw_shape": codes.shape,
        "raw_both": torch.cat([codes.texture, codes.shape], dim=1),
        "light": codes.light, "pose": codes.pose, "albedo_map": albedo_map, "normal_map": normal_map,
        **(truth or {}),
    }
    if model.config.has_rdm:
        identity, expression = disentangle_all(model, codes, seed, batch_size)
        feats.update({
            "identity_texture": identity.texture, "identity_shape": identity.shape,
            "identity_both": torch.cat([identity.texture, identity.shape], dim=1),
            "expression_texture": expression.texture, "expression_shape": expression.shape,
            "expression_both": torch.cat([expression.texture, expression.shape], dim=1),
            # `LatentFace.features(protocol="fer")` with the same start noise.
            "fer": torch.cat([expression.texture, codes.texture, expression.shape, codes.shape], dim=1),
        })
    return {name: value.float() for name, value in feats.items()}


# ------------------------------------------------------------------------------------------------------ probes


def identity_halves(identity: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean masks (train, test): items of the first half of the identities (sorted), and of the rest."""
    ids = torch.unique(identity)
    train_ids = ids[: len(ids) // 2]
    train = torch.isin(identity, train_ids)
    return train, ~train


def probe_val_fraction(train_labels: Tensor) -> float | None:
    """`linear_probe`'s validation fraction: 0.2, raised (up to 0.5) when no class would give a validation item;
    None when every training class has a single item (no validation split is possible)."""
    largest = int(torch.bincount(train_labels).max())
    if int(PROBE_VAL_FRACTION * largest) >= 1:
        return PROBE_VAL_FRACTION
    if largest >= 2:
        return min(0.5, (1 + 1e-9) / largest)
    return None


def probe_folds(train_identity: Tensor) -> int | None:
    """Folds of the identity-disjoint probe selection: `PROBE_FOLDS`, fewer with fewer training identities; None
    with fewer than two."""
    folds = min(PROBE_FOLDS, len(torch.unique(train_identity)))
    return folds if folds >= 2 else None


def score_features(feats: dict[str, Tensor], identity: Tensor, expression: Tensor, seed: int,
                   progress: bool = True, max_iter: int = 100, selection: str = "identity") -> dict[str, Any]:
    """Identity retrieval and the expression probe for every feature set, with the chance levels.

    `selection`: how the probe's L2 weight is chosen (`PROBE_SELECTIONS`): cross-validation over folds of whole
    training identities, or a stratified split of the training images."""
    num_classes = len(EXPRESSIONS)
    train, test = identity_halves(identity)
    val_fraction = folds = None
    if train.any() and test.any():
        if selection == "identity":
            folds = probe_folds(identity[train])
        else:
            val_fraction = probe_val_fraction(expression[train])
    out: dict[str, Any] = {
        "chance": {
            "retrieval": retrieval_chance(identity),
            "probe": {**probe_chance(expression[train], expression[test], num_classes, EXPRESSIONS),
                      "train_items": int(train.sum()), "test_items": int(test.sum()),
                      "train_identities": len(torch.unique(identity[train])),
                      "test_identities": len(torch.unique(identity[test])), "selection": selection,
                      "folds": folds, "val_fraction": val_fraction,
                      "test_class_counts": torch.bincount(expression[test], minlength=num_classes).tolist()},
        },
        "features": {},
    }
    names = [name for name, _, _ in FEATURE_SETS if name in feats]
    for name in tqdm(names, desc="probes", disable=not progress, file=sys.stderr):
        x = feats[name]
        row: dict[str, Any] = {"dim": x.shape[1]}
        try:
            r = identity_retrieval(x, identity)
            row["retrieval"] = {"top1": r.top1, "mean_ap": r.mean_ap, "queries": r.queries, "excluded": r.excluded}
        except ValueError as err:
            row["retrieval"], row["retrieval_skipped"] = None, str(err)
        if val_fraction is None and folds is None:
            row["probe"] = None
            row["probe_skipped"] = ("too few training identities for identity folds" if selection == "identity"
                                    else "too few training items per class for a validation split")
        else:
            chooser = ({"groups": identity[train], "folds": folds} if folds is not None
                       else {"val_fraction": val_fraction})
            p = linear_probe(x[train], expression[train], x[test], expression[test], num_classes=num_classes,
                             max_iter=max_iter, seed=seed, **chooser)
            row["probe"] = {"accuracy": p.accuracy, "macro_f1": p.macro_f1,
                            "per_class_accuracy": [finite(v) for v in p.per_class_accuracy.tolist()],
                            "weight_decay": p.weight_decay, "val_accuracy": p.val_accuracy}
        out["features"][name] = row
    return out


def split_summary(features: dict[str, Any]) -> dict[str, Any]:
    """Per latent (texture, shape, both): expression probe accuracy of the identity and expression latents minus the
    raw latents', and identity retrieval mAP of the identity latents minus the raw latents'."""

    def accuracy(name: str) -> float | None:
        probe = features[name]["probe"]
        return None if probe is None else probe["accuracy"]

    def mean_ap(name: str) -> float | None:
        retrieval = features[name]["retrieval"]
        return None if retrieval is None else retrieval["mean_ap"]

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    out = {}
    for part in ("texture", "shape", "both"):
        raw = f"raw_{part}"
        out[part] = {"raw_probe": accuracy(raw),
                     "identity_probe_minus_raw": minus(accuracy(f"identity_{part}"), accuracy(raw)),
                     "expression_probe_minus_raw": minus(accuracy(f"expression_{part}"), accuracy(raw)),
                     "identity_map_minus_raw": minus(mean_ap(f"identity_{part}"), mean_ap(raw))}
    return out


# ------------------------------------------------------------------------------------------------------- clips


def clip_diagnostic(model: LatentFace, codes: FaceCodes, clips: int, frames: int, seed: int,
                    batch_size: int) -> dict[str, Any]:
    """`clip_invariance` of raw and (with an RDM) identity latents of M clips of F frames (codes clip after clip).

    The distance to target is to the clip mean of the raw latents (Stage 2's training target): for raw latents
    the "origin" distance, for identity latents the "predict" distance.
    """
    per_clip = {"raw_texture": codes.texture, "raw_shape": codes.shape}
    if model.config.has_rdm:
        identity, _ = disentangle_all(model, codes, seed, batch_size)
        per_clip.update({"identity_texture": identity.texture, "identity_shape": identity.shape})
    per_clip = {k: v.reshape(clips, frames, -1) for k, v in per_clip.items()}
    targets = {"texture": per_clip["raw_texture"].double().mean(1), "shape": per_clip["raw_shape"].double().mean(1)}
    return {name: clip_invariance(value, targets[name.split("_")[1]]) for name, value in per_clip.items()}


# -------------------------------------------------------------------------------------------------------- data


def synth_image_batches(dataset: SynthFacesImages, batch_size: int,
                        labels: dict[str, list[Tensor]]) -> Iterator[Tensor]:
    """Images of SynthFaces rendered on the fly; labels and ground-truth maps appended to `labels`."""
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(range(start, min(start + batch_size, len(dataset)))).as_dict()
        labels["identity"].append(batch["identity"])
        labels["expression"].append(batch["expression"])
        labels["true_albedo_map"].append(pooled_map(batch["albedo"]))
        labels["true_normal_map"].append(pooled_map(batch["canonical_normal"]))
        yield batch["image"]


def synth_clip_batches(dataset: SynthFacesClips, batch_size: int) -> Iterator[Tensor]:
    """Frames of SynthFaces clips rendered on the fly, clip after clip (whole clips per batch)."""
    per_batch = max(1, batch_size // dataset.frames)
    for start in range(0, len(dataset), per_batch):
        yield dataset.batch(range(start, min(start + per_batch, len(dataset)))).image


def folder_image_batches(dataset: SynthFacesFolder, batch_size: int,
                         labels: dict[str, list[Tensor]]) -> Iterator[Tensor]:
    """Frames of a SynthFaces export; labels and ground-truth maps appended to `labels`."""
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        labels["identity"].append(torch.stack([it["identity"] for it in items]).long())
        labels["expression"].append(torch.stack([it["expression"] for it in items]).long())
        labels["true_albedo_map"].append(pooled_map(torch.stack([it["albedo"] for it in items])))
        labels["true_normal_map"].append(pooled_map(torch.stack([it["canonical_normal"] for it in items])))
        yield torch.stack([it["image"] for it in items])


def folder_clip_batches(dataset: SynthFacesFolder, batch_size: int, frames: int) -> Iterator[Tensor]:
    """Frames of the clips of a SynthFaces export, clip after clip."""
    per_batch = max(1, batch_size // frames)
    for start in range(0, len(dataset), per_batch):
        yield torch.cat([dataset[i]["image"] for i in range(start, min(start + per_batch, len(dataset)))])


# ------------------------------------------------------------------------------------------------------ report


def _clean(value: Any) -> Any:
    """NaN/Inf -> None, recursively (strict JSON)."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _points(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def markdown(report: dict[str, Any]) -> str:
    """Settings and the two results tables, as markdown."""
    m, s, r = report["machine"], report["settings"], report["results"]
    data = s["data"]
    if data["source"] == "synthfaces":
        where = (f"SynthFaces {data['split']} split generated on the fly: {data['identities']} identities x "
                 f"{data['samples_per_identity']} images"
                 + (f" ({', '.join(data['hold'])} held per identity)" if data.get("hold") else "")
                 + f", {data['clips']} clips x {data['frames']} frames, seed {data['seed']}")
    else:
        where = f"SynthFaces export {data['root']}, split {data['split']}"
    chance, probe_chance_ = r["chance"]["retrieval"], r["chance"]["probe"]
    lines = [
        f"**Weights**: {s['weights']}. **Data**: {where}; {report['num_images']} images.",
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable CPUs, torch {m['torch']}"
         + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; device {s['device']}, batch {s['batch_size']}, "
         f"seed {s['seed']}."),
        (f"Identity retrieval: leave-one-out, cosine, over all {report['num_images']} images. Expression probe "
         f"({len(EXPRESSIONS)} classes): trained on {probe_chance_['train_items']} images of "
         f"{probe_chance_['train_identities']} identities, tested on {probe_chance_['test_items']} images of "
         f"{probe_chance_['test_identities']} other identities; "
         + (f"L2 weight chosen by {probe_chance_['folds']}-fold cross-validation over the training identities."
            if probe_chance_.get("folds") else "L2 weight chosen on a stratified fifth of the training images.")
         + " Scores in %."),
    ]
    lines += [f"**Note**: {note}" for note in r["notes"]]
    lines += [
        "",
        "| features | dim | retrieval top-1 | retrieval mAP | expression accuracy | expression macro-F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {name: label for name, label, _ in FEATURE_SETS}
    for name, row in r["features"].items():
        ret, probe = row["retrieval"] or {}, row["probe"] or {}
        lines.append(f"| {labels[name]} | {row['dim']} | {_pct(ret.get('top1'))} | {_pct(ret.get('mean_ap'))} | "
                     f"{_pct(probe.get('accuracy'))} | {_pct(probe.get('macro_f1'))} |")
    lines.append(f"| *chance* | | {_pct(chance['top1'])} | {_pct(chance['mean_ap'])} | "
                 f"{_pct(probe_chance_['majority_accuracy'])} (majority), {_pct(probe_chance_['uniform'])} (uniform) |"
                 " |")
    if r.get("split"):
        lines += ["", "The split (differences to the raw latents, in points): expression probe of the identity latents "
                  "(should be lower) and of the expression latents (should be about equal), identity retrieval mAP "
                  "of the identity latents (should not be lower).", "",
                  "| latent | raw probe | identity probe - raw | expression probe - raw | identity mAP - raw |",
                  "|---|---:|---:|---:|---:|"]
        for part, row in r["split"].items():
            lines.append(f"| {part} | {_pct(row['raw_probe'])} | {_points(row['identity_probe_minus_raw'])} | "
                         f"{_points(row['expression_probe_minus_raw'])} | {_points(row['identity_map_minus_raw'])} |")
    clips = r["clips"]
    if clips is None:
        lines += ["", "Clip invariance: skipped (" + r["clips_skipped"] + ")."]
    else:
        lines += [
            "",
            (f"Clip invariance ({clips['clips']} clips x {clips['frames']} frames): each frame's latent against its "
             "clip's mean latent, and against Stage 2's target (the clip mean of the raw latents: origin distance "
             "for raw latents, predict distance for identity latents)."),
            "",
            "| latent | cosine to clip mean | distance to clip mean | relative distance | distance to target |",
            "|---|---:|---:|---:|---:|",
        ]
        clip_labels = {name: label for name, label, _ in CLIP_LATENTS}
        for name, row in clips["latents"].items():
            lines.append(f"| {clip_labels[name]} | {row['cosine_to_clip_mean']:.4f} | "
                         f"{row['distance_to_clip_mean']:.4g} | {row['relative_distance']:.4f} | "
                         f"{row['distance_to_target']:.4g} |")
    t = report["timing"]
    lines += ["", f"Wall time {report['total_seconds']:.1f} s (encoding {t['encode_seconds']:.1f} s, RDM and probes "
              f"{t['score_seconds']:.1f} s)."]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    harness.add_model_options(p, weights=DEFAULT_WEIGHTS)
    p.add_argument("--data-root", type=Path, default=None,
                   help="a SynthFaces export folder (default: SynthFaces generated on the fly)")
    p.add_argument("--split", choices=SPLITS, default="test", help="split to evaluate")
    p.add_argument("--identities", type=int, default=64, help="SynthFaces identities of the image set (>= 2)")
    p.add_argument("--samples-per-identity", type=int, default=16, help="images per identity (>= 2)")
    p.add_argument("--clips", type=int, default=32, help="clips of the invariance diagnostic (0: skip it)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (>= 2)")
    p.add_argument("--hold", default="", help="comma-separated factors every image of an identity takes from its first "
                   f"image ({', '.join(HOLDABLE)}); 'light,shift' holds what a clip holds")
    p.add_argument("--seed", type=int, default=0, help="SynthFaces world seed, RDM noise seed and probe seed")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--probe-selection", choices=PROBE_SELECTIONS, default="identity",
                   help="how the probe's L2 weight is chosen: cross-validation over folds of whole training "
                        "identities (default), or a stratified fifth of the training images")
    p.add_argument("--probe-max-iter", type=int, default=100, help="L-BFGS iterations per fit of the linear probe")
    harness.add_run_options(p, "disentangle", progress=True)
    args = p.parse_args(argv)
    if args.identities < 2 or args.samples_per_identity < 2:
        p.error("--identities and --samples-per-identity must be at least 2")
    if args.clips < 0 or args.frames < 2 or args.batch_size < 1 or args.probe_max_iter < 1:
        p.error("--clips must be >= 0, --frames >= 2, --batch-size and --probe-max-iter >= 1")
    args.hold = [name for name in args.hold.split(",") if name]
    unknown = sorted(set(args.hold) - set(HOLDABLE))
    if unknown:
        p.error(f"--hold: unknown factors {unknown}; choose from {list(HOLDABLE)}")
    if args.hold and args.data_root is not None:
        p.error("--hold applies to SynthFaces generated on the fly, not to --data-root")
    return args


def _data(args: argparse.Namespace, size: int) -> tuple[dict[str, Any], Callable[..., Any]]:
    """Settings of the data and a function giving (image batches, total, labels, clip source)."""
    labels: dict[str, list[Tensor]] = {name: [] for name in ("identity", "expression", *TRUE_MAPS)}
    if args.data_root is None:
        config = SynthConfig(size=size)
        images = SynthFacesImages(args.identities, args.samples_per_identity, split=args.split, seed=args.seed,
                                  config=config, hold=args.hold)
        clips = (SynthFacesClips(args.clips, 1, args.frames, split=args.split, seed=args.seed, config=config)
                 if args.clips else None)
        info = {"source": "synthfaces", "split": args.split, "identities": args.identities,
                "samples_per_identity": args.samples_per_identity, "hold": args.hold, "clips": args.clips,
                "frames": args.frames, "seed": args.seed, "size": size}

        def clip_source() -> tuple[Iterator[Tensor], int, int] | None:
            if clips is None:
                return None
            return synth_clip_batches(clips, args.batch_size), len(clips), clips.frames

        return info, lambda: (synth_image_batches(images, args.batch_size, labels), len(images), labels, clip_source)
    try:
        frames_ds = SynthFacesFolder(args.data_root, args.split)
        clips_ds = SynthFacesFolder(args.data_root, args.split, clips=True)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"cannot read the SynthFaces export {str(args.data_root)!r}: {err}") from err
    lengths = {len(e) for e in clips_ds.entries}
    frames = lengths.pop() if len(lengths) == 1 else 0
    info = {"source": "folder", "root": str(args.data_root), "split": args.split, "size": size,
            "images": len(frames_ds), "clips": len(clips_ds) if frames >= 2 else 0, "frames": frames}

    def folder_clips() -> tuple[Iterator[Tensor], int, int] | None:
        if frames < 2 or not args.clips:
            return None
        return folder_clip_batches(clips_ds, args.batch_size, frames), len(clips_ds), frames

    return info, lambda: (folder_image_batches(frames_ds, args.batch_size, labels), len(frames_ds), labels,
                          folder_clips)


@reports_errors(WeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = harness.select_devices([args.device], args.threads)[0]
    torch.manual_seed(args.seed)
    model = load_model(args.weights, device)
    info, source = _data(args, model.config.image_size)
    progress = not args.no_progress
    batches, total, labels, clip_source = source()
    t0 = time.perf_counter()
    codes = encode_all(model, batches, total, "encode images", progress)
    clip_input = clip_source()
    clip_codes = encode_all(model, clip_input[0], clip_input[1] * clip_input[2], "encode clips", progress) \
        if clip_input else None
    encode_seconds = time.perf_counter() - t0
    identity, expression = torch.cat(labels["identity"]).long(), torch.cat(labels["expression"]).long()

    t0 = time.perf_counter()
    notes = [] if model.config.has_rdm else [NO_RDM_NOTE]
    truth = {name: torch.cat(labels[name]) for name in TRUE_MAPS}
    feats = feature_sets(model, codes, args.seed, args.batch_size, truth)
    results = score_features(feats, identity, expression, args.seed, progress, args.probe_max_iter,
                             args.probe_selection)
    if clip_codes is not None:
        clips, frames = clip_input[1], clip_input[2]
        results["clips"] = {"clips": clips, "frames": frames,
                            "latents": clip_diagnostic(model, clip_codes, clips, frames, args.seed, args.batch_size)}
    else:
        results["clips"] = None
        results["clips_skipped"] = "--clips 0" if not args.clips else "the export's clips have fewer than 2 frames"
    score_seconds = time.perf_counter() - t0
    results["split"] = split_summary(results["features"]) if model.config.has_rdm else None
    results["skipped"] = [name for name, _, rdm in FEATURE_SETS if rdm and not model.config.has_rdm]
    results["notes"] = notes
    report: dict[str, Any] = {
        "benchmark": "disentangle",
        "machine": harness.machine_info([device]),
        "settings": {
            "weights": args.weights, "device": str(device), "batch_size": args.batch_size, "seed": args.seed,
            "data": info, "retrieval": "leave-one-out identity retrieval, cosine similarity, all images",
            "probe": "linear_probe (L-BFGS logistic regression), train: first half of the identities, test: the rest",
            "probe_max_iter": args.probe_max_iter, "probe_selection": args.probe_selection,
            "rdm_noise": "torch.Generator().manual_seed(seed), whole set at once (texture, then shape)",
            "sampler": model.config.sampler, "sampling_steps": model.config.sampling_steps,
            "expressions": list(EXPRESSIONS),
        },
        "model": harness.model_record(model),
        "num_images": len(identity),
        "results": _clean(results),
        "timing": {"encode_seconds": encode_seconds, "score_seconds": score_seconds},
    }
    report["total_seconds"] = report["timing"]["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

"""Tiny benchmark datasets in their official layouts, drawn from SynthFaces, for tests of the benchmark readers and
of end-to-end benchmarks (import with ``from benchmark_fixtures import make_rafdb``).

Every maker writes tens of 64-px images under `root` and returns what a correct reader should find, in the order
it should find it. Output depends only on the arguments (same arguments, same bytes). Expression sets draw each
image from its own SynthFaces identity with a chosen SynthFaces expression class (so labels are learnable from
expression alone); pair sets draw several images per identity (expression, pose and light vary), so "same" means
the same SynthFaces identity.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentface.data.synthfaces import (
    EXPRESSIONS,
    Expression,
    SynthConfig,
    expression_actions,
    render_factors,
    sample_images,
)

RAFDB_NAMES = {"surprise": "Surprise", "fear": "Fear", "disgust": "Disgust", "happy": "Happiness",
               "sad": "Sadness", "angry": "Anger", "neutral": "Neutral"}
"""SynthFaces expression -> RAF-DB class name (RAF-DB label = position in RAF-DB's class list + 1)."""

AFFECTNET_CODES = {"neutral": 0, "happy": 1, "sad": 2, "surprise": 3, "fear": 4, "disgust": 5, "angry": 6}
"""SynthFaces expression -> AffectNet expression code (SynthFaces has no contempt, code 7)."""

_RAFDB_ORDER = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
_SYNTH_SPLIT = {"train": "train", "test": "test"}
_BACKDROP = (255, 0, 255)
"""Colour of the AffectNet canvas around the face box (never drawn by SynthFaces)."""


@dataclass(frozen=True)
class FixtureImage:
    """One image written by a maker.

    Attributes:
        path: the image file.
        split: dataset split (``"train"``, ``"test"`` or the labelled folder's split).
        label: the 0-based label a reader should return (AffectNet: the expression code written, 8..10 for the
            rows the released filter drops).
        expression: the SynthFaces expression drawn.
        identity: SynthFaces identity index (within the SynthFaces split used for `split`).
        yaw: head yaw in degrees.
        box: face box ``(x, y, w, h)`` written to the list file (AffectNet), else None.
        usable: whether the released AffectNet filter keeps the row (expression 0..7, valence/arousal in [-1, 1]).
    """

    path: Path
    split: str
    label: int
    expression: str
    identity: int
    yaw: float
    box: tuple[int, int, int, int] | None = None
    usable: bool = True


@dataclass(frozen=True)
class AffectNetFixture:
    """What `make_affectnet` wrote.

    Attributes:
        train, test: the rows of training.csv and validation.csv, in CSV order (unusable rows included).
        pose_list: a pose list in the official format naming the test images with ``|yaw| >= pose_yaw``.
        pose_names: the file names it selects.
    """

    train: list[FixtureImage]
    test: list[FixtureImage]
    pose_list: Path
    pose_names: frozenset[str]


@dataclass(frozen=True)
class PairFixture:
    """What `make_lfw` / `make_sllfw` wrote.

    Attributes:
        pairs_file: the pair list.
        pairs: ``(image1, image2, same)`` in file order; pair ``k`` belongs to fold ``k // (2 * pairs_per_fold)``.
        pairs_per_fold: same-person pairs (and as many different-person pairs) per fold.
    """

    pairs_file: Path
    pairs: list[tuple[Path, Path, bool]]
    pairs_per_fold: int


def render_faces(split: str, identities: Sequence[int], *, samples: Sequence[int] | None = None,
                 expressions: Sequence[str] | None = None, seed: int = 0, world: SynthConfig | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Render 64-px SynthFaces images (in batches of 64; an image does not depend on its batch). Results are
    cached in memory for repeated calls with the same arguments (the arrays are read-only).

    Args:
        split: SynthFaces split.
        identities: identity index of each image.
        samples: sample index of each image (default 0 for all).
        expressions: expression name of each image (`EXPRESSIONS`), replacing the drawn one; intensity in
            [0.6, 1.0] drawn from `seed`, no jitter.
        seed: world seed.
        world: SynthFaces ranges (size 64); default `SynthConfig()`. Narrow pose ranges (``max_yaw=0`` and so on)
            make the expression easy to read from pixels.

    Returns:
        (B, 64, 64, 3) uint8 pixels and the (B,) head yaw in degrees.
    """
    samples = [0] * len(identities) if samples is None else samples
    world = world or SynthConfig()
    if world.size != 64:
        raise ValueError(f"fixtures are 64 px, got a world of size {world.size}")
    return _render(split, tuple(identities), tuple(samples), None if expressions is None else tuple(expressions),
                   seed, world)


@functools.lru_cache(maxsize=16)
def _render(split: str, identities: tuple[int, ...], samples: tuple[int, ...], expressions: tuple[str, ...] | None,
            seed: int, config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    strength = torch.tensor(np.random.default_rng([seed, len(identities)]).uniform(0.6, 1.0, len(identities)),
                            dtype=torch.float32)
    images, yaws = [], []
    for start in range(0, len(identities), 64):
        part = slice(start, start + 64)
        factors = sample_images(seed, split, list(zip(identities[part], samples[part], strict=True)), config)
        if expressions is not None:
            label = torch.tensor([EXPRESSIONS.index(e) for e in expressions[part]])
            intensity = torch.where(label == 0, 0.0, strength[part])
            jitter = torch.zeros(len(label), factors.expression.actions.shape[1])
            factors.expression = Expression(expression_actions(label, intensity, jitter), label, intensity)
        images.append(render_factors(factors, config).image)
        yaws.append(factors.pose.yaw)
    pixels = (torch.cat(images).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    yaw = torch.cat(yaws).numpy()
    pixels.setflags(write=False)
    yaw.setflags(write=False)
    return pixels, yaw


def _write(path: Path, data: bytes) -> Path:
    """Write a fixture file through a temporary file and a rename (no fsync: fixtures live in temporary folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _save(path: Path, pixels: np.ndarray) -> Path:
    buffer = io.BytesIO()
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return _write(path, buffer.getvalue())


def _expression_plan(per_class: int | Mapping[str, int], rng: np.random.Generator,
                     classes: Sequence[str] = EXPRESSIONS) -> list[str]:
    """Expression of each image: `per_class` of each class (a count, or a count per class name), shuffled."""
    counts = {c: per_class if isinstance(per_class, int) else per_class.get(c, 0) for c in classes}
    plan = [c for c in classes for _ in range(counts[c])]
    return [plan[i] for i in rng.permutation(len(plan))]


def make_rafdb(root: Path, *, per_class: int | Mapping[str, int] = 3, test_per_class: int | Mapping[str, int] = 2,
               layout: str = "paper", seed: int = 0, world: SynthConfig | None = None) -> list[FixtureImage]:
    """Write RAF-DB basic: ``train_00001.jpg``-style names with labels 1..7 in ``list_patition_label.txt``.

    Args:
        root: dataset folder to create.
        per_class: training images per SynthFaces expression (a count, or a count per expression name).
        test_per_class: test images per expression.
        layout: ``"paper"`` (``root/aligned/``, ``root/list_patition_label.txt``), ``"download"``
            (``root/basic/Image/aligned/``, ``root/basic/EmoLabel/list_patition_label.txt``) or ``"basic"``
            (the download's ``basic/`` folder as root: ``root/Image/aligned/``, ``root/EmoLabel/...``).
        seed: seed of the images and their order.
        world: SynthFaces ranges (`render_faces`).

    Returns:
        The training images then the test images, in label-file order.
    """
    label_file, image_dir = {"paper": ("list_patition_label.txt", "aligned"),
                             "download": ("basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned"),
                             "basic": ("EmoLabel/list_patition_label.txt", "Image/aligned")}[layout]
    rng = np.random.default_rng([seed, 1])
    out: list[FixtureImage] = []
    lines: list[str] = []
    for split, counts, digits in (("train", per_class, 5), ("test", test_per_class, 4)):
        plan = _expression_plan(counts, rng)
        pixels, yaw = render_faces(_SYNTH_SPLIT[split], range(len(plan)), expressions=plan, seed=seed, world=world)
        for i, (expression, image) in enumerate(zip(plan, pixels, strict=True)):
            name = f"{split}_{i + 1:0{digits}d}"
            label = _RAFDB_ORDER.index(RAFDB_NAMES[expression])
            path = _save(root / image_dir / f"{name}_aligned.jpg", image)
            lines.append(f"{name}.jpg {label + 1}")
            out.append(FixtureImage(path, split, label, expression, i, float(yaw[i])))
    _write(root / label_file, ("\n".join(lines) + "\n").encode())
    return out


def _affectnet_split(root: Path, split: str, plan: list[str], unusable: int, rng: np.random.Generator,
                     seed: int, world: SynthConfig | None) -> tuple[list[FixtureImage], list[list[str]]]:
    """Images and CSV rows of one AffectNet split; `unusable` extra rows have codes 8..10 or valence -2."""
    n = len(plan) + unusable
    pixels, yaw = render_faces(_SYNTH_SPLIT[split], range(n), expressions=plan + ["neutral"] * unusable,
                               seed=seed, world=world)
    order = rng.permutation(n)
    images: list[FixtureImage] = []
    rows: list[list[str]] = []
    for i in order:
        digest = hashlib.sha224(f"{seed}/{split}/{i}".encode()).hexdigest()
        relative = f"{1 + i % 3}/{digest}.jpg"
        x, y = (int(v) for v in rng.integers(0, 33, 2))
        canvas = np.empty((96, 96, 3), np.uint8)
        canvas[:] = _BACKDROP
        canvas[y:y + 64, x:x + 64] = pixels[i]
        path = _save(root / "Manually_Annotated_Images" / relative, canvas)
        valence, arousal = (round(float(v), 6) for v in rng.uniform(-1, 1, 2))
        if i < len(plan):
            expression, code, usable = plan[i], AFFECTNET_CODES[plan[i]], True
        else:
            k = i - len(plan)
            off_scale = k % 4 == 3  # a usable code with valence -2 (as AffectNet marks faceless rows)
            code = 0 if off_scale else 8 + k % 3  # 8 none, 9 uncertain, 10 no face
            expression, usable, valence = "neutral", False, -2.0 if off_scale else valence
        landmarks = ";".join(f"{v:.2f}" for v in rng.uniform(x, x + 64, 10))
        rows.append([relative, str(x), str(y), "64", "64", landmarks, str(code), str(valence), str(arousal)])
        images.append(FixtureImage(path, split, code, expression, int(i), float(yaw[i]),
                                   (x, y, 64, 64), usable))
    return images, rows


def make_affectnet(root: Path, *, train_per_class: int | Mapping[str, int] = 6,
                   test_per_class: int | Mapping[str, int] = 2, unusable: int = 4, header: bool = True,
                   pose_yaw: float = 20.0, seed: int = 0, world: SynthConfig | None = None) -> AffectNetFixture:
    """Write AffectNet's manually annotated set: CSVs in ``Manually_Annotated_file_lists/``, 96-px images in
    ``Manually_Annotated_Images/<1..3>/<sha224>.jpg`` with the 64-px face at the CSV box on a magenta canvas,
    and a head-pose list ``root/pose_list.txt`` in the official ``<code>/<name>.jpg`` format (first line repeated,
    as in the released lists).

    Args:
        root: dataset folder to create.
        train_per_class: training images per SynthFaces expression (a count, or a count per expression name).
        test_per_class: validation images per expression.
        unusable: extra rows per CSV that the released filter drops (expression 8, 9, 10, then valence -2).
        header: write the CSV header row.
        pose_yaw: the pose list names the usable test images with ``|yaw| >= pose_yaw`` degrees (the list is
            empty when no test face turns that far, e.g. with a frontal `world`).
        seed: seed of the images and the row order.
        world: SynthFaces ranges (`render_faces`).

    Returns:
        The rows written and the pose list.
    """
    rng = np.random.default_rng([seed, 2])
    splits: dict[str, list[FixtureImage]] = {}
    for split, counts, csv_name in (("train", train_per_class, "training.csv"),
                                    ("test", test_per_class, "validation.csv")):
        splits[split], rows = _affectnet_split(root, split, _expression_plan(counts, rng), unusable, rng, seed,
                                               world)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if header:
            writer.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                             "facial_landmarks", "expression", "valence", "arousal"])
        writer.writerows(rows)
        _write(root / "Manually_Annotated_file_lists" / csv_name, text.getvalue().encode())
    posed = [im for im in splits["test"] if im.usable and abs(im.yaw) >= pose_yaw]
    lines = [f"{im.label}/{im.path.name}" for im in posed]
    pose_list = _write(root / "pose_list.txt", "".join(f"{line}\n" for line in lines[:1] + lines).encode())
    return AffectNetFixture(splits["train"], splits["test"], pose_list, frozenset(im.path.name for im in posed))


def make_labelled_folder(root: Path, *, per_class: int | Mapping[str, int] = 3,
                         splits: Sequence[str] | None = ("train", "test"), seed: int = 0,
                         world: SynthConfig | None = None) -> list[FixtureImage]:
    """Write ``root/<split>/<expression>/img<k>.png`` (or ``root/<expression>/img<k>.png`` with ``splits=None``),
    one folder per SynthFaces expression; file numbers are not zero-padded, so natural order matters.

    Args:
        root: dataset folder to create.
        per_class: images per expression and split.
        splits: split folder names (SynthFaces split "train" for "train", "test" for "test", "val" otherwise).
        seed: seed of the images.
        world: SynthFaces ranges (`render_faces`).

    Returns:
        The images by split, then class in natural (here alphabetical) order, then file number; labels index the
        expressions present in any split.
    """
    rng = np.random.default_rng([seed, 3])
    plans = {split: _expression_plan(per_class, rng) for split in splits or [None]}
    classes = sorted({e for plan in plans.values() for e in plan})
    out: list[FixtureImage] = []
    for split, plan in plans.items():
        plan = sorted(plan, key=classes.index)
        pixels, yaw = render_faces(_SYNTH_SPLIT.get(split or "", "val"), range(len(plan)), expressions=plan,
                                   seed=seed, world=world)
        folder = root / split if split else root
        for i, (expression, image) in enumerate(zip(plan, pixels, strict=True)):
            k = i - plan.index(expression) + 1
            path = _save(folder / expression / f"img{k}.png", image)
            out.append(FixtureImage(path, split or "", classes.index(expression), expression, i, float(yaw[i])))
    return out


def lfw_name(identity: int) -> str:
    """LFW-style folder name of a SynthFaces identity."""
    return f"Synth_Face_{identity:03d}"


def _write_lfw_crop(root: Path, identities: int, images_per_identity: int, seed: int) -> None:
    """``root/lfw_crop/<Name>/<Name>_<0001..>.jpg``: `images_per_identity` views of each SynthFaces val identity."""
    ids = [i for i in range(identities) for _ in range(images_per_identity)]
    pixels, _ = render_faces("val", ids, samples=list(range(images_per_identity)) * identities, seed=seed)
    for n, image in enumerate(pixels):
        name = lfw_name(n // images_per_identity)
        _save(root / "lfw_crop" / name / f"{name}_{n % images_per_identity + 1:04d}.jpg", image)


def _draw_pairs(identities: int, images_per_identity: int, pairs_per_fold: int, rng: np.random.Generator
                ) -> list[tuple[tuple[int, int], tuple[int, int], bool]]:
    """10 folds of `pairs_per_fold` same then as many different pairs of (identity, 1-based image)."""
    if identities < 2 or images_per_identity < 2:
        raise ValueError("pairs need at least 2 identities with at least 2 images each")
    out = []
    for _ in range(10):
        for same in (True, False):
            for _ in range(pairs_per_fold):
                a, b = (rng.choice(identities, 2, replace=False) if not same else [rng.integers(identities)] * 2)
                i, j = (rng.choice(images_per_identity, 2, replace=False) if same
                        else rng.integers(images_per_identity, size=2))
                out.append(((int(a), int(i) + 1), (int(b), int(j) + 1), same))
    return out


def _pair_paths(root: Path, drawn: list[tuple[tuple[int, int], tuple[int, int], bool]]
                ) -> list[tuple[Path, Path, bool]]:
    def path(item: tuple[int, int]) -> Path:
        return root / "lfw_crop" / lfw_name(item[0]) / f"{lfw_name(item[0])}_{item[1]:04d}.jpg"

    return [(path(a), path(b), same) for a, b, same in drawn]


def make_lfw(root: Path, *, identities: int = 10, images_per_identity: int = 4, pairs_per_fold: int = 3,
             seed: int = 0) -> PairFixture:
    """Write LFW: ``root/lfw_crop/<Name>/<Name>_<4 digits>.jpg`` and ``root/pairs.txt`` (header ``10<TAB>count``,
    then per fold `pairs_per_fold` lines ``name<TAB>i<TAB>j`` and as many ``name1<TAB>i<TAB>name2<TAB>j``).

    Args:
        root: dataset folder to create (may be shared with `make_sllfw`: the images are the same).
        identities: SynthFaces identities (split "val"), at least 2.
        images_per_identity: views of each identity (expression, pose and light differ), at least 2.
        pairs_per_fold: same-person pairs per fold (as many different-person pairs).
        seed: seed of the images and pairs.

    Returns:
        The pair list written.
    """
    _write_lfw_crop(root, identities, images_per_identity, seed)
    drawn = _draw_pairs(identities, images_per_identity, pairs_per_fold, np.random.default_rng([seed, 4]))
    lines = [f"10\t{pairs_per_fold}"] + [
        f"{lfw_name(a[0])}\t{a[1]}\t{b[1]}" if same else f"{lfw_name(a[0])}\t{a[1]}\t{lfw_name(b[0])}\t{b[1]}"
        for a, b, same in drawn]
    pairs_file = _write(root / "pairs.txt", ("\n".join(lines) + "\n").encode())
    return PairFixture(pairs_file, _pair_paths(root, drawn), pairs_per_fold)


def make_sllfw(root: Path, *, identities: int = 10, images_per_identity: int = 4, pairs_per_fold: int = 3,
               seed: int = 0) -> PairFixture:
    """Write SLLFW: the `make_lfw` images and ``root/pair_SLLFW.txt``, two lines ``<Name>/<Name>_<4 digits>.jpg``
    per pair, per fold `pairs_per_fold` same-person pairs then as many different-person pairs.

    Args:
        root: dataset folder to create (may be shared with `make_lfw`).
        identities: SynthFaces identities (split "val"), at least 2.
        images_per_identity: views of each identity, at least 2.
        pairs_per_fold: same-person pairs per fold (as many different-person pairs).
        seed: seed of the images and pairs.

    Returns:
        The pair list written.
    """
    _write_lfw_crop(root, identities, images_per_identity, seed)
    drawn = _draw_pairs(identities, images_per_identity, pairs_per_fold, np.random.default_rng([seed, 5]))
    lines = [f"{lfw_name(item[0])}/{lfw_name(item[0])}_{item[1]:04d}.jpg" for a, b, _ in drawn for item in (a, b)]
    pairs_file = _write(root / "pair_SLLFW.txt", ("\n".join(lines) + "\n").encode())
    return PairFixture(pairs_file, _pair_paths(root, drawn), pairs_per_fold)

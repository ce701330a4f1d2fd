"""Reconstruction sheets, meshes and turntables of face images: the work of ``latentface reconstruct``.

A sheet shows one face per row in labelled columns (`COLUMNS`): the input, the canonical albedo, depth, normals
and shading, the reconstruction (input view), the frontal view, and the reconstruction relit from the viewer's
left, top and right. `write_reconstructions` writes, for every input face, into one folder:

- ``<name>.png``: its sheet;
- ``<name>.obj`` with ``<name>.mtl`` and the texture ``<name>.albedo.png``: the canonical (frontal) depth mesh,
  textured with the albedo (`latentface.export.save_obj`);
- ``<name>.gif`` / ``<name>.webp`` / ``<name>.turntable.png`` (APNG): a looping yaw sweep
  (`latentface.visualize.turntable`);
- ``reconstruct.json``: the status of every input (``done``, ``up-to-date``: its outputs already existed, or
  ``error`` with the reason), its name and its outputs, and with a face detector where its face is (detector box,
  crop box, confidence).

``<name>`` is the input's file stem, made unique (``x``, ``x-2``, ...) when stems collide, or when one input's
files would take another's names (case-insensitively). With every face of each image (``all_faces``), the record
of face k of ``dir/x.png`` is ``dir/x.png#k`` and its files are named ``x-face<k>``. Every file is written
atomically.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from latentface.errors import InvalidImageError
from latentface.export import save_obj
from latentface.face_records import FaceBox
from latentface.fileio import write_atomic
from latentface.inputs import expand_inputs
from latentface.paths import display_name
from latentface.preprocess import Images, read_image
from latentface.render.codes import decode_light
from latentface.render.formation import form_image
from latentface.render.shading import shade
from latentface.visualize import (
    depth_to_rgb,
    make_grid,
    normal_to_rgb,
    save_animation,
    shading_to_rgb,
    turntable,
)

if TYPE_CHECKING:
    from latentface.model import LatentFace
    from latentface.outputs import FaceCodes

__all__ = [
    "ANIMATIONS",
    "COLUMNS",
    "RELIGHTS",
    "InputRecord",
    "Reconstructions",
    "labelled_grid",
    "output_files",
    "reconstruction_panels",
    "reconstruction_sheet",
    "row_label_width",
    "save_picture",
    "unique_names",
    "write_reconstructions",
]

RELIGHTS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("light left", (1.0, 0.0, 1.0)),
    ("light top", (0.0, 1.0, 1.0)),
    ("light right", (-1.0, 0.0, 1.0)),
)
"""Relit columns: label and the direction given to `LatentFace.light_code`. That direction is the one the light
travels in camera space (x right, y down, z into the scene; shading is ``max(0, <normal, direction>)`` with the
package's inward normals), so light coming from the viewer's left travels towards +x."""

RELIGHT_AMBIENT, RELIGHT_DIFFUSE = 0.3, 0.8
"""Ambient and diffuse strengths of the relit columns."""

COLUMNS: tuple[str, ...] = (
    "input", "albedo", "depth", "normals", "shading", "reconstruction", "frontal", *(r[0] for r in RELIGHTS)
)
"""Column labels of a sheet, in order. Albedo, depth, normals and shading are the canonical (frontal) maps; the
shading of a face is scaled down to its maximum where it exceeds 1 (`shading_to_rgb` with ``fit=True``)."""

ANIMATIONS = {"gif": ".gif", "webp": ".webp", "apng": ".turntable.png"}
"""Turntable formats of `write_reconstructions` and the suffix of their files (APNG must not take the sheet's
``.png``)."""

LABEL_HEIGHT = 16
"""Height in pixels of the label strip above the columns of `labelled_grid`."""

ROW_LABEL_MARGIN = 4
"""Pixels left and right of the row labels of `labelled_grid`."""

_FONT_SIZE = 11
_MIN_PANEL = 128


def _background(image: Tensor, mask: Tensor, background: float) -> Tensor:
    return torch.where(mask[:, None], image.clamp(0, 1), float(background))


@torch.no_grad()
def reconstruction_panels(
    model: LatentFace, batch: Tensor, codes: FaceCodes | None = None, *, background: float = 1.0
) -> Tensor:
    """The images of the sheet columns (`COLUMNS`) of a batch of faces.

    Args:
        model: the model (in eval mode).
        batch: (B, 3, S, S) preprocessed images in [0, 1] (`LatentFace.preprocess`).
        codes: their codes, when already encoded (`LatentFace.encode_batch`).
        background: gray value of the pixels the face does not cover in the posed renderings.

    Returns:
        (B, len(COLUMNS), 3, S, S) float32 images in [0, 1] on the CPU.
    """
    codes = model.encode_batch(batch) if codes is None else codes
    return _panels(model, batch, codes, *model.decode(codes), background)


def _panels(model: LatentFace, batch: Tensor, codes: FaceCodes, albedo: Tensor, depth: Tensor,
            background: float) -> Tensor:
    """`reconstruction_panels` from decoded maps: the maps are decoded and the input view warped once."""
    cfg, renderer = model.config, model.renderer
    view = form_image(albedo, depth, codes.light, codes.pose, cfg, renderer=renderer)
    frontal = form_image(albedo, depth, codes.light, torch.zeros_like(codes.pose), cfg, renderer=renderer)
    assert view.image is not None and view.mask is not None and view.grid is not None
    assert frontal.image is not None and frontal.mask is not None  # posed renderings always have them
    columns = [
        batch,
        albedo.clamp(0, 1),
        depth_to_rgb(depth),
        normal_to_rgb(view.canonical_normal),
        shading_to_rgb(view.shading, fit=True),
        _background(view.image, view.mask, background),
        _background(frontal.image, frontal.mask, background),
    ]
    normal = view.canonical_normal.permute(0, 2, 3, 1)
    for _, direction in RELIGHTS:
        code = model.light_code(ambient=RELIGHT_AMBIENT, diffuse=RELIGHT_DIFFUSE, direction=direction)
        shading = shade(normal, *decode_light(code.to(codes.light).expand_as(codes.light), cfg))
        # Same pose, so the same warp: pull the relit canonical image through the input view's grid.
        relit = F.grid_sample(albedo * shading, view.grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        columns.append(_background(relit, view.mask, background))
    return torch.stack([c.detach().float().cpu() for c in columns], dim=1)


def _default_scale(size: int) -> int:
    return max(1, math.ceil(_MIN_PANEL / size))


def labelled_grid(
    panels: Tensor, labels: Sequence[str], *, row_labels: Sequence[str] | None = None, scale: int | None = None,
    padding: int = 2, pad_value: float = 1.0,
) -> Image.Image:
    """Tile (rows, columns) images under one strip of column labels, optionally beside a strip of row labels.

    Each image is enlarged ``scale`` times (nearest neighbour) to a panel of side ``s = S * scale``; the picture
    is ``L + columns * (s + padding) + padding`` wide and ``LABEL_HEIGHT + rows * (s + padding) + padding`` high,
    with the panel of row r, column c at ``(LABEL_HEIGHT + padding + r * (s + padding),
    L + padding + c * (s + padding))`` (top, left), where L is 0 without row labels and `row_label_width` with
    them. Labels are drawn in black with PIL's default font, column labels centred over their column (cut with
    "..." when wider than the panel), row labels left-aligned beside the middle of their row.

    Args:
        panels: (rows, columns, 3, S, S) images in [0, 1] (values clamped).
        labels: one label per column.
        row_labels: one label per row, or None for no row label strip.
        scale: enlargement factor; default the smallest making panels at least 128 px.
        padding: pixels between and around the panels.
        pad_value: gray value of the padding and the label strips.

    Returns:
        The RGB picture.

    Raises:
        ValueError: on a wrong shape, label count, scale or padding.
    """
    if panels.ndim != 5 or panels.shape[2] != 3:
        raise ValueError(f"panels must have shape (rows, columns, 3, S, S), got {tuple(panels.shape)}")
    rows, cols, _, h, w = panels.shape
    if len(labels) != cols:
        raise ValueError(f"got {len(labels)} labels for {cols} columns")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
    scale = _default_scale(max(h, w)) if scale is None else scale
    if scale < 1 or padding < 0:
        raise ValueError(f"scale must be >= 1 and padding >= 0, got scale={scale}, padding={padding}")
    images = panels.flatten(0, 1).float()
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    grid = make_grid(images, nrow=cols, padding=padding, pad_value=pad_value)
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    body = Image.fromarray(pixels, mode="RGB")
    gray = round(255 * min(max(pad_value, 0.0), 1.0))
    strip = 0 if row_labels is None else row_label_width(row_labels)
    picture = Image.new("RGB", (strip + body.width, body.height + LABEL_HEIGHT), (gray, gray, gray))
    picture.paste(body, (strip, LABEL_HEIGHT))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=_FONT_SIZE)
    side = w * scale
    for c, label in enumerate(labels):
        text = _fit(label, font, side)
        left = strip + padding + c * (side + padding) + (side - draw.textlength(text, font=font)) / 2
        draw.text((left, LABEL_HEIGHT / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    for r, label in enumerate(row_labels or ()):
        middle = LABEL_HEIGHT + padding + r * (h * scale + padding) + h * scale / 2
        draw.text((ROW_LABEL_MARGIN, middle), label, fill=(0, 0, 0), font=font, anchor="lm")
    return picture


def row_label_width(row_labels: Sequence[str]) -> int:
    """Width in pixels of the row label strip of `labelled_grid`: the longest label plus a margin each side.

    Args:
        row_labels: the row labels.

    Returns:
        ``ceil(longest label length) + 2 * ROW_LABEL_MARGIN``.
    """
    font = ImageFont.load_default(size=_FONT_SIZE)
    return math.ceil(max((font.getlength(label) for label in row_labels), default=0.0)) + 2 * ROW_LABEL_MARGIN


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """`text`, cut with "..." to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def save_picture(picture: Image.Image, path: str | os.PathLike) -> Path:
    """Write a picture (e.g. a `labelled_grid`) as PNG, atomically; parent folders are created.

    Returns:
        The path written.
    """
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def reconstruction_sheet(
    model: LatentFace, images: Images, *, scale: int | None = None, padding: int = 2, background: float = 1.0
) -> list[Image.Image]:
    """One labelled sheet (a row of `COLUMNS`) per face.

    Args:
        model: the model (in eval mode).
        images: any input accepted by `LatentFace.encode`.
        scale, padding: panel enlargement and spacing (`labelled_grid`).
        background: gray value around the face in the posed renderings.

    Returns:
        One RGB picture per image.

    Raises:
        InvalidImageError: an input cannot be read or converted (names it).
    """
    with torch.inference_mode():
        panels = reconstruction_panels(model, model.preprocess(images), background=background)
    return [labelled_grid(panels[i : i + 1], COLUMNS, scale=scale, padding=padding) for i in range(len(panels))]


def output_files(name: str, *, mesh: bool = True, animation: str | None = "gif") -> list[str]:
    """File names `write_reconstructions` writes for a face called `name`.

    Args:
        name: the face's name (see `unique_names`).
        mesh: with the mesh files (``.obj``, ``.mtl``, ``.albedo.png``).
        animation: a key of `ANIMATIONS`, or None for no turntable.

    Returns:
        The file names, the sheet first.
    """
    if animation is not None and animation not in ANIMATIONS:
        raise ValueError(f"animation must be one of {', '.join(ANIMATIONS)} or None, got {animation!r}")
    files = [f"{name}.png"]
    if mesh:
        files += [f"{name}.obj", f"{name}.mtl", f"{name}.albedo.png"]
    if animation is not None:
        files.append(name + ANIMATIONS[animation])
    return files


def unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Output names of input files: their stems, with ``-2``, ``-3``, ... added where needed so that no two
    inputs share an output file (`output_files` with every option, compared case-insensitively).

    The first input keeps its stem; the names depend only on the inputs and their order.

    Args:
        paths: the input files.

    Returns:
        One name per path.
    """
    taken: set[str] = set()
    names = []
    for path in paths:
        stem = Path(path).stem or "face"
        name, k = stem, 1
        while True:
            files = {f.casefold() for a in ANIMATIONS for f in output_files(name, animation=a)}
            if not files & taken:
                break
            k += 1
            name = f"{stem}-{k}"
        taken |= files
        names.append(name)
    return names


class FaceCropLike(Protocol):
    """A detected face: ``image`` is its square crop, cut at ``crop_box`` around the detector's ``box``."""

    image: Image.Image
    box: tuple[float, float, float, float]
    crop_box: tuple[int, int, int, int]
    confidence: float


class FaceDetectorLike(Protocol):
    """Anything with ``detect(image) -> list of crops`` (e.g. `latentface.preprocess.faces.FaceDetector`)."""

    def detect(self, image: Image.Image) -> Sequence[FaceCropLike]: ...


@dataclass
class InputRecord:
    """What became of one input.

    Attributes:
        input: the input as given (a file, or an input that matched nothing).
        status: ``"done"``, ``"up-to-date"`` (its outputs existed; nothing written) or ``"error"``.
        name: its output name (None when it matched no file).
        outputs: the files written or found, relative to the output folder.
        error: the reason, for ``"error"``.
        face: with a detector, where the face is (`latentface.face_records.FaceBox.to_dict`: ``box``,
            ``crop_box``, ``confidence``).
    """

    input: str
    status: str
    name: str | None = None
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    face: dict[str, Any] | None = None


@dataclass
class Reconstructions:
    """The result of `write_reconstructions`.

    Attributes:
        records: one per input file (in order), then one per input that matched no file.
        summary: path of ``reconstruct.json``.
    """

    records: list[InputRecord]
    summary: Path

    def count(self, status: str) -> int:
        """Number of records with this status."""
        return sum(r.status == status for r in self.records)


def _detect(path: Path, detector: FaceDetectorLike) -> Sequence[FaceCropLike]:
    """The faces the detector finds in one file (at least one)."""
    try:
        image = read_image(path)  # the detector converts any mode itself (16-bit scaled, not clipped)
    except InvalidImageError:
        raise
    except (OSError, ValueError) as err:
        raise InvalidImageError(f"cannot read image: {err}") from err
    try:
        crops = detector.detect(image)
    except RuntimeError as err:
        raise InvalidImageError(f"face detection failed: {err}") from err
    if not crops:
        raise InvalidImageError("no face found")
    return crops


def _face_name(base: str, k: int, taken: set[str]) -> str:
    """``<base>-face<k>``, made unique among `taken` (case-insensitively) and added to it."""
    name, n = f"{base}-face{k}", 1
    while name.casefold() in taken:
        n += 1
        name = f"{base}-face{k}-{n}"
    taken.add(name.casefold())
    return name


def write_reconstructions(
    model: LatentFace,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    mesh: bool = True,
    animation: str | None = "gif",
    frames: int = 24,
    max_yaw: float = 35.0,
    fps: float = 12,
    batch_size: int = 8,
    overwrite: bool = False,
    detector: FaceDetectorLike | None = None,
    all_faces: bool = False,
    background: float = 1.0,
    on_record: Callable[[InputRecord], None] | None = None,
) -> Reconstructions:
    """Write the sheet, mesh and turntable of every input face (see the module docstring for the files).

    Inputs that cannot be read, hold no face (with a detector) or fail to write are recorded as errors and
    skipped; the others go on. A face whose outputs all exist is skipped unless `overwrite`.

    Args:
        model: the model (in eval mode).
        inputs: files, folders, glob patterns and ``@list`` files (`latentface.inputs.expand_inputs`; files
            inside `out_dir` are not collected from folders and patterns).
        out_dir: output folder (created).
        mesh: write the textured OBJ mesh.
        animation: turntable format, a key of `ANIMATIONS`, or None for none.
        frames: turntable frames.
        max_yaw: turntable yaw amplitude in degrees.
        fps: turntable frames per second.
        batch_size: faces encoded and rendered at once.
        overwrite: redo faces whose outputs exist.
        detector: face detector; each input is cropped to its first detected face (every face with
            `all_faces`), and an input without one is an error. None: the whole image is the face. With a detector
            every input is searched, also when its outputs exist, so that every record says where its face is.
        all_faces: one record and set of files per detected face (needs `detector`).
        background: gray value around the face in the posed renderings.
        on_record: called with each record once its input is dealt with (for progress reports; faces are
            finished a batch at a time, so not always in input order).

    Returns:
        `Reconstructions`: the records, also written to ``out_dir/reconstruct.json``.

    Raises:
        ValueError: on a bad option.
    """
    if all_faces and detector is None:
        raise ValueError("all_faces needs a face detector")
    if animation is not None and animation not in ANIMATIONS:
        raise ValueError(f"animation must be one of {', '.join(ANIMATIONS)} or None, got {animation!r}")
    if frames < 1 or batch_size < 1:
        raise ValueError(f"frames and batch_size must be >= 1, got frames={frames}, batch_size={batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expanded = expand_inputs(inputs, exclude=[out])
    records: list[InputRecord] = []
    pending: list[tuple[InputRecord, Tensor]] = []

    def finish(record: InputRecord) -> None:
        if on_record is not None:
            on_record(record)

    def flush() -> None:
        if pending:
            for record in _reconstruct_batch(model, pending, out, mesh, animation, frames, max_yaw, fps, background):
                finish(record)
            pending.clear()

    names = unique_names(expanded.files)
    taken = {n.casefold() for n in names}
    for path, name in zip(expanded.files, names, strict=True):
        faces: Sequence[FaceCropLike | None] = [None]
        if detector is not None:
            try:
                found = _detect(path, detector)
            except InvalidImageError as err:
                records.append(InputRecord(input=display_name(path), status="error", name=name, error=str(err)))
                finish(records[-1])
                continue
            faces = found if all_faces else found[:1]
        for k, face in enumerate(faces):
            face_name = _face_name(name, k, taken) if all_faces else name
            shown = display_name(path)
            record = InputRecord(input=f"{shown}#{k}" if all_faces else shown, status="done", name=face_name,
                                 outputs=output_files(face_name, mesh=mesh, animation=animation),
                                 face=None if face is None else FaceBox.of(face).to_dict())
            records.append(record)
            if not overwrite and all((out / f).is_file() for f in record.outputs):
                record.status = "up-to-date"
                finish(record)
                continue
            try:
                image, what = (path, "the image") if face is None else (face.image, "the detected face")
                pending.append((record, model.preprocess(image, name=what)))
            except InvalidImageError as err:
                record.status, record.error, record.outputs = "error", str(err), []
                finish(record)
            if len(pending) == batch_size:
                flush()
    flush()
    for spec, reason in expanded.problems:
        records.append(InputRecord(input=spec, status="error", error=reason))
        finish(records[-1])
    summary = _write_summary(out, records, mesh=mesh, animation=animation, frames=frames, max_yaw=max_yaw,
                             detect=detector is not None, all_faces=all_faces)
    return Reconstructions(records, summary)


def _reconstruct_batch(
    model: LatentFace, pending: Sequence[tuple[InputRecord, Tensor]], out: Path, mesh: bool, animation: str | None,
    frames: int, max_yaw: float, fps: float, background: float,
) -> list[InputRecord]:
    """Encode and render a batch of loaded faces and write their files; write errors are recorded per face."""
    batch = torch.cat([x for _, x in pending])
    with torch.inference_mode():
        codes = model.encode_batch(batch)
        albedo, depth = model.decode(codes)
        panels = _panels(model, batch, codes, albedo, depth, background)
        video = turntable(model, codes, frames, max_yaw, background=background).cpu() if animation else None
    finite = torch.stack([torch.isfinite(c).flatten(1).all(1) for c in (codes.texture, codes.shape, codes.light,
                                                                        codes.pose)]).all(0)
    done = []
    for i, (record, _) in enumerate(pending):
        name = record.name
        assert name is not None
        if not finite[i]:
            record.status, record.error, record.outputs = "error", "non-finite result (NaN or Inf in its codes)", []
            done.append(record)
            continue
        try:
            if mesh:
                save_obj(out / f"{name}.obj", depth[i].cpu(), model.config.fov, texture=albedo[i].cpu(),
                         texture_name=f"{name}.albedo.png")
            if video is not None and animation is not None:
                save_animation(video[i], out / (name + ANIMATIONS[animation]), fps=fps)
            save_picture(labelled_grid(panels[i : i + 1], COLUMNS), out / f"{name}.png")
        except (OSError, ValueError) as err:
            record.status, record.error, record.outputs = "error", f"cannot write outputs: {err}", []
        done.append(record)
    return done


def _write_summary(out: Path, records: Sequence[InputRecord], **settings: object) -> Path:
    counts = {s: sum(r.status == s for r in records) for s in ("done", "up-to-date", "error")}
    text = json.dumps({"settings": settings, "counts": counts, "inputs": [asdict(r) for r in records]}, indent=2)
    return write_atomic(out / "reconstruct.json", (text + "\n").encode("utf-8"))

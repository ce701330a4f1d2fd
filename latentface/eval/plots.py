"""Evaluation figures drawn with Pillow only: a confusion matrix and a ROC curve, written atomically as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from latentface.fileio import write_atomic

_FONT_SIZE = 14
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_GRID = (220, 220, 220)
_CURVE = (31, 119, 180)
_CHANCE = (150, 150, 150)
_LIGHT = (247, 251, 255)  # the two ends of the cell colour scale (a white-to-blue ramp)
_DARK = (8, 48, 107)


def save_confusion_matrix(
    path: str | os.PathLike, confusion: Tensor, classes: Sequence[str], *, title: str | None = None
) -> Path:
    """Draw a confusion matrix: rows = true class, columns = predicted class.

    Each cell shows its count and its share of the row (the per-class recall on the diagonal); its colour
    goes from white (0 %) to dark blue (100 % of the row).

    Args:
        path: destination; its suffix must be ``.png``.
        confusion: (C, C) non-negative counts, row = true, column = predicted.
        classes: the C class names, in index order.
        title: optional title above the matrix.

    Returns:
        The path written.

    Raises:
        ValueError: a path not ending in .png, a misshaped or negative matrix, or the wrong number of names.
    """
    path = _png_path(path)
    counts = torch.as_tensor(confusion).detach().cpu()
    c = len(classes)
    if counts.shape != (c, c) or c == 0:
        raise ValueError(f"confusion must be ({c}, {c}) for {c} class names, got {tuple(counts.shape)}")
    if (counts < 0).any() or not torch.isfinite(counts.double()).all():
        raise ValueError("confusion must hold finite non-negative counts")
    rows = counts.double().sum(1, keepdim=True)
    share = torch.where(rows > 0, counts.double() / rows.clamp(min=1e-12), 0.0)
    font = _font()
    cell = max(56, _text_size(font, "100%")[0] + 16)
    label_w = max(_text_size(font, name)[0] for name in classes) + 12
    title_h = 32 if title else 8
    left, top = label_w + 30, title_h
    width, height = left + c * cell + 12, top + c * cell + label_w + 30
    image = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((width // 2, 6), title, fill=_BLACK, font=font, anchor="mt")
    for i in range(c):
        for j in range(c):
            f = float(share[i, j])
            fill = tuple(round(a + (b - a) * f) for a, b in zip(_LIGHT, _DARK, strict=True))
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle((x0, y0, x0 + cell, y0 + cell), fill=fill, outline=_GRID)
            count = counts[i, j].item()
            text = f"{count:g}\n{100 * f:.0f}%"
            draw.multiline_text((x0 + cell // 2, y0 + cell // 2), text, font=font, anchor="mm", align="center",
                                fill=_WHITE if f > 0.5 else _BLACK)
    for k, name in enumerate(classes):
        draw.text((left - 6, top + k * cell + cell // 2), name, fill=_BLACK, font=font, anchor="rm")
        _paste_vertical(image, name, font, left + k * cell + cell // 2, top + c * cell + 6, anchor="top")
    draw.text((left + c * cell // 2, height - 6), "predicted", fill=_BLACK, font=font, anchor="mb")
    _paste_vertical(image, "true", font, 8 + _FONT_SIZE // 2, top + c * cell // 2, anchor="middle")
    return _save(image, path)


def save_roc_curve(path: str | os.PathLike, fpr: Tensor, tpr: Tensor, label: str) -> Path:
    """Draw a ROC curve with the chance diagonal, a 0.2-step grid, axis names and a legend.

    Args:
        path: destination; its suffix must be ``.png``.
        fpr: (K,) false positive rates in [0, 1] (x).
        tpr: (K,) true positive rates in [0, 1] (y).
        label: legend text, e.g. ``"LFW, AUC 0.912"``.

    Returns:
        The path written.

    Raises:
        ValueError: a path not ending in .png, misshaped inputs or rates outside [0, 1].
    """
    path = _png_path(path)
    x = torch.as_tensor(fpr).detach().cpu().double()
    y = torch.as_tensor(tpr).detach().cpu().double()
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"fpr and tpr must be (K,) with K >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()) or x.min() < 0 or x.max() > 1 or y.min() < 0 \
            or y.max() > 1:
        raise ValueError("fpr and tpr must lie in [0, 1]")
    font = _font()
    size, left, right, top, bottom = 400, 70, 20, 20, 60
    image = Image.new("RGB", (left + size + right, top + size + bottom), _WHITE)
    draw = ImageDraw.Draw(image)

    def point(u: float, v: float) -> tuple[float, float]:
        return left + u * size, top + (1 - v) * size

    for k in range(6):
        t = k / 5
        draw.line([point(t, 0), point(t, 1)], fill=_GRID)
        draw.line([point(0, t), point(1, t)], fill=_GRID)
        px, py = point(t, 0)
        draw.text((px, py + 6), f"{t:.1f}", fill=_BLACK, font=font, anchor="mt")
        px, py = point(0, t)
        draw.text((px - 6, py), f"{t:.1f}", fill=_BLACK, font=font, anchor="rm")
    for k in range(0, 40, 2):  # dashed chance line
        draw.line([point(k / 40, k / 40), point((k + 1) / 40, (k + 1) / 40)], fill=_CHANCE, width=1)
    draw.rectangle((left, top, left + size, top + size), outline=_BLACK)
    draw.line([point(float(u), float(v)) for u, v in zip(x, y, strict=True)], fill=_CURVE, width=2)
    legend_w = _text_size(font, label)[0] + 44
    lx, ly = left + size - legend_w - 8, top + size - 30
    draw.rectangle((lx, ly, lx + legend_w, ly + 22), fill=_WHITE, outline=_GRID)
    draw.line([(lx + 6, ly + 11), (lx + 30, ly + 11)], fill=_CURVE, width=2)
    draw.text((lx + 36, ly + 11), label, fill=_BLACK, font=font, anchor="lm")
    draw.text((left + size // 2, top + size + bottom - 6), "false positive rate", fill=_BLACK, font=font,
              anchor="mb")
    _paste_vertical(image, "true positive rate", font, 10 + _FONT_SIZE // 2, top + size // 2, anchor="middle")
    return _save(image, path)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (scalable where FreeType is available)."""
    return ImageFont.load_default(size=_FONT_SIZE)


def _text_size(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> tuple[int, int]:
    """Width and height of `text` drawn in `font`."""
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return int(box[2] - box[0]), int(box[3] - box[1])


def _paste_vertical(
    image: Image.Image, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, cx: int, y: int, anchor: str
) -> None:
    """Paste `text` rotated 90 degrees (reading bottom to top), centred on column `cx`; `y` is its top
    (``anchor="top"``) or its centre (``anchor="middle"``)."""
    w, h = _text_size(font, text)
    strip = Image.new("L", (w + 4, h + 8), 0)
    ImageDraw.Draw(strip).text((2, 4), text, fill=255, font=font, anchor="lt")
    mask = strip.rotate(90, expand=True)
    top = y if anchor == "top" else y - mask.height // 2
    image.paste(Image.new("RGB", mask.size, _BLACK), (cx - mask.width // 2, top), mask)


def _png_path(path: str | os.PathLike) -> Path:
    """`path` as a Path, checked to end in .png."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG, so the path must end in .png, got {str(path)!r}")
    return path


def _save(image: Image.Image, path: Path) -> Path:
    """Encode `image` as PNG and write it atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())

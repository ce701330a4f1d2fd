"""Turning user images into the network's input batch: reading, checking, converting and resizing.

Accepted inputs: a PIL image, a file path (`str` or `os.PathLike`), a numpy array HxW or HxWxC (uint8,
uint16 or float in [0, 1]), a torch tensor CxHxW or BxCxHxW (float in [0, 1] or uint8), or a list/tuple of
these. Grayscale is repeated to RGB, an alpha channel is dropped (RGBA, LA, La, PA), palette, bilevel, CMYK,
YCbCr, LAB and HSV images are converted to RGB, and PIL images are read by their real value range, never clipped:
16-bit modes (``I;16*``) are divided by 65535, 32-bit integer images (``I``) by 255 or 65535 and float images
(``F``) by 1, 255 or 65535, whichever is the smallest range that holds their values. A PIL image's EXIF
orientation is applied (files are read upright by `read_image`). Every problem raises `InvalidImageError` naming
the offending input and, in a batch tensor, the image index: wrong types, shapes or dtypes, empty images and
batches, values outside the range, NaN/Inf, meta tensors, closed PIL images, unreadable files.

Size limits: files over PIL's decompression-bomb limit (``2 * PIL.Image.MAX_IMAGE_PIXELS`` pixels, about 179
megapixels by default) are refused before decoding; images under `MIN_IMAGE_SIDE` pixels on a side are refused
(`check_image_size`) by every entry point: `LatentFace.preprocess` (so `encode` and `features`), ``latentface
encode`` (which may ask for more with ``--min-side``), ``latentface reconstruct`` and face detection; `to_batch`
refuses them when asked (``min_side``).
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from latentface.errors import DamagedImageError, InvalidImageError

ImageInput = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike
Images = ImageInput | Sequence[ImageInput]

_FLOAT_TOLERANCE = 1e-4
_ORIENTATION = 0x0112  # EXIF tag; 1 is upright, 2..8 need a flip and/or rotation

MIN_IMAGE_SIDE = 16
"""Smallest side (pixels) `check_image_size` accepts by default: below it no face is recognisable, and MTCNN's
smallest window is 12 pixels."""


def _describe(index: int, item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"input {index} ({os.fspath(item)!r})"
    shape = getattr(item, "shape", None)  # numpy arrays and tensors
    if shape is None and isinstance(item, Image.Image):
        shape = item.size
    return f"input {index} ({type(item).__module__}.{type(item).__name__}, shape/size {_shape_text(shape)})"


def _shape_text(shape: object) -> str:
    try:
        return str(tuple(shape))  # type: ignore[call-overload]
    except TypeError:
        return "?"


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file, apply its EXIF orientation and decode it fully (errors surface here).

    Only a regular file is opened: a named pipe, socket or device is refused after a ``stat`` (reading a pipe would
    block until something writes to it). Damage that Pillow reports as a warning while reading (an invalid APNG
    chunk, an icon frame of the wrong size, a malformed MPO or TIFF directory, ...) is an error: the pixels may be
    garbled or not the ones the file was meant to hold.

    Raises:
        DamagedImageError: Pillow warned while reading the file.
        InvalidImageError: the file is not a regular file, or larger than PIL's decompression-bomb limit.
        OSError, ValueError: the file is missing or not a readable image.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise InvalidImageError(f"{os.fspath(path)!r}: not a regular file (a folder, named pipe, socket or device)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(path) as im:
                im = upright(im)
                im.load()
    except Image.DecompressionBombError as err:
        raise InvalidImageError(
            f"{os.fspath(path)!r}: refused as a possible decompression bomb ({err}); if the file is trusted, raise "
            "PIL.Image.MAX_IMAGE_PIXELS (or set it to None) before reading it"
        ) from err
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    damage = [str(w.message) for w in caught if not issubclass(w.category, Image.DecompressionBombWarning)]
    if damage:
        raise DamagedImageError(f"{os.fspath(path)!r}: damaged image data ({'; '.join(damage)})", "; ".join(damage))
    return im


def upright(image: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation tag; the image itself when it has none (no copy)."""
    if image.getexif().get(_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def check_image_size(width: int, height: int, name: str, min_side: int = MIN_IMAGE_SIDE) -> None:
    """Refuse an image smaller than `min_side` pixels on a side.

    Args:
        width, height: the image size.
        name: how the error message names the image.
        min_side: the smallest accepted side.

    Raises:
        InvalidImageError: a side is under `min_side`.
    """
    if min(width, height) < min_side:
        raise InvalidImageError(
            f"{name}: image is {width}x{height} pixels, smaller than the minimum of {min_side} on a side"
        )


def to_rgb8(image: Image.Image) -> Image.Image:
    """An RGB 8-bit copy of any PIL image (the image itself if it is RGB already).

    16-bit, 32-bit integer and float images are scaled by their value range as in `to_batch` rather than clipped
    at 255 (what PIL's own ``convert("RGB")`` does to them). The EXIF orientation is not applied here (see
    `upright`).

    Raises:
        InvalidImageError: the image cannot be read (closed) or its values fit no range.
    """
    if image.mode == "RGB":
        return image
    arr = _pil_to_array(image, "image")
    if arr.dtype != np.uint8:
        arr = np.round(arr * 255.0).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return Image.fromarray(arr, "RGB")


_RANGES = (1.0, 255.0, 65535.0)
"""Value ranges a float (``F``) image may use: [0, 1], 8-bit or 16-bit values; 32-bit integer (``I``) images use
the last two."""


def _by_range(arr: np.ndarray, mode: str, name: str) -> np.ndarray:
    """A 32-bit integer or float image as float32 in [0, 1], divided by the smallest range that holds its values."""
    values = arr.astype(np.float32)
    if not np.isfinite(values).all():
        raise InvalidImageError(f"{name}: PIL image of mode {mode} contains NaN or Inf values")
    lo, hi = float(values.min(initial=np.inf)), float(values.max(initial=-np.inf))
    ranges = _RANGES if mode == "F" else _RANGES[1:]
    top = next((r for r in ranges if hi <= r), None)
    if lo < 0 or top is None:
        raise InvalidImageError(
            f"{name}: PIL image of mode {mode} has values in [{lo:.4g}, {hi:.4g}], outside every range it is read "
            f"in ({', '.join(f'[0, {r:g}]' for r in ranges)})"
        )
    return values / top


def _pil_to_array(im: Image.Image, name: str, turn: bool = False) -> np.ndarray:
    """RGB uint8 for 8-bit modes; float32 in [0, 1] for 16-bit, 32-bit integer and float modes (by their range).

    Args:
        im: the image.
        name: how errors name it.
        turn: first apply its EXIF orientation (`upright`).

    Raises:
        InvalidImageError: the image cannot be read (closed, or its file is gone) or converted.
    """
    try:
        if turn:
            im = upright(im)
        if im.mode.startswith("I;16"):
            return np.asarray(im).astype(np.float32) / 65535.0
        if im.mode in ("I", "F"):
            return _by_range(np.asarray(im), im.mode, name)
        if im.mode == "La":  # premultiplied: PIL converts it to RGB only through LA
            im = im.convert("LA")
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, AssertionError) as err:  # PIL asserts on an image whose file closed
        raise InvalidImageError(
            f"{name}: cannot read the PIL image of mode {im.mode} (closed, or its file is gone?): {err!r}"
        ) from err


def _array_to_chw(arr: np.ndarray, name: str) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidImageError(
            f"{name}: expected a numpy array HxW or HxWxC with C in (1, 3, 4), got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        data = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        data = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        data = arr.astype(np.float32)
    else:
        raise InvalidImageError(f"{name}: unsupported numpy dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)


def _check_float(chw: torch.Tensor, name: str) -> torch.Tensor:
    if min(chw.shape[1:]) < 1:
        raise InvalidImageError(f"{name}: image has no pixels (shape {tuple(chw.shape)})")
    if not torch.isfinite(chw).all():
        raise InvalidImageError(f"{name}: contains NaN or Inf values")
    lo, hi = chw.min().item(), chw.max().item()
    if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
        raise InvalidImageError(
            f"{name}: float values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]"
            " (divide uint8 data by 255; map [-1, 1] data with x / 2 + 0.5)"
        )
    return chw.clamp(0, 1)


def _to_rgb(chw: torch.Tensor, name: str) -> torch.Tensor:
    channels = chw.shape[0]
    if channels == 1:
        return chw.expand(3, -1, -1)
    if channels in (3, 4):
        return chw[:3]
    raise InvalidImageError(f"{name}: expected 1, 3 or 4 channels, got {channels}")


def _tensor_images(t: torch.Tensor, name: str) -> list[torch.Tensor]:
    """The images of a CxHxW or BxCxHxW tensor; problems of image i of a batch are named ``<name>, image i``."""
    if t.is_meta or t.layout != torch.strided:
        where = "on the meta device (no data)" if t.is_meta else f"of layout {t.layout} (use .to_dense())"
        raise InvalidImageError(f"{name}: the tensor is {where}")
    batched = t.ndim == 4
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise InvalidImageError(f"{name}: expected a tensor CxHxW or BxCxHxW, got shape {tuple(t.shape)}")
    if len(t) == 0:
        raise InvalidImageError(f"{name}: the batch holds no images (shape {tuple(t.shape)})")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        raise InvalidImageError(f"{name}: unsupported tensor dtype {t.dtype}; use float in [0, 1] or uint8")
    t = t.detach().to("cpu", torch.float32)
    names = [f"{name}, image {i}" if batched else name for i in range(len(t))]
    return [_to_rgb(_check_float(im, n), n) for im, n in zip(t, names, strict=True)]


def _single(item: ImageInput, name: str) -> list[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return _tensor_images(item, name)
    if isinstance(item, (str, os.PathLike)):
        try:
            item = read_image(item)
        except DamagedImageError as err:
            raise DamagedImageError(f"{name}: {err}", err.detail) from err
        except InvalidImageError as err:
            raise InvalidImageError(f"{name}: {err}") from err
        except (OSError, ValueError) as err:
            raise InvalidImageError(f"{name}: cannot read image: {err}") from err
    if isinstance(item, Image.Image):
        item = _pil_to_array(item, name, turn=True)
    if isinstance(item, np.ndarray):
        chw = _array_to_chw(item, name)
        return [_to_rgb(_check_float(chw, name), name)]
    raise InvalidImageError(
        f"{name}: unsupported type {type(item).__name__}; expected a PIL image, numpy array, torch tensor or file path"
    )


def resize_square(
    chw: torch.Tensor, size: int, resample: str = "bilinear", resize_mode: str = "stretch"
) -> torch.Tensor:
    """Resize one image (3, H, W) to (3, size, size), antialiased when shrinking.

    Args:
        chw: image in [0, 1].
        size: output side.
        resample: ``"bilinear"`` or ``"bicubic"``.
        resize_mode: ``"stretch"`` (ignore aspect ratio) or ``"center_crop"`` (largest centred square first).
    """
    _, h, w = chw.shape
    if resize_mode == "center_crop" and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        chw = chw[:, top : top + side, left : left + side]
        h = w = side
    if (h, w) == (size, size):
        return chw
    out = F.interpolate(chw[None], size=(size, size), mode=resample, align_corners=False, antialias=True)[0]
    return out.clamp(0, 1)


def to_batch(
    images: Images,
    size: int,
    resample: str = "bilinear",
    resize_mode: str = "stretch",
    *,
    min_side: int = 1,
    name: str | None = None,
) -> torch.Tensor:
    """Convert any accepted input to one float32 batch (B, 3, size, size) in [0, 1] on the CPU.

    Args:
        images: one input or a list/tuple of inputs (module docstring).
        size: output side.
        resample: ``"bilinear"`` or ``"bicubic"``.
        resize_mode: ``"stretch"`` or ``"center_crop"`` (`resize_square`).
        min_side: refuse images with a side under this many pixels (`MIN_IMAGE_SIDE` is the rule of every entry
            point: `LatentFace.preprocess`, and so `encode` and `features`, ``latentface encode`` and
            ``reconstruct``; the default 1 only refuses empty images).
        name: how errors name the input (one input) or prefix the name of each (a list); default: the index and
            path, or the type and shape.

    Raises:
        InvalidImageError: naming the first bad input (its index, path or type and shape).
    """
    listed = isinstance(images, (list, tuple))
    items: Sequence[ImageInput] = list(images) if listed else [images]  # type: ignore[arg-type]
    if not items:
        raise InvalidImageError("no images given: the input list is empty")
    batch: list[torch.Tensor] = []
    for index, item in enumerate(items):
        described = _describe(index, item)
        label = described if name is None else f"{name}, {described}" if listed else name
        for chw in _single(item, label):
            check_image_size(chw.shape[2], chw.shape[1], label, min_side)
            batch.append(resize_square(chw, size, resample, resize_mode))
    return torch.stack(batch)

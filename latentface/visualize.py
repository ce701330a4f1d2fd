"""Pictures of rendered faces: display conversions of the maps, image grids, animations and turntables.

Display conversions turn the maps of a `latentface.outputs.Rendering` into (B, 3, H, W) float images in [0, 1]:

- depth (`depth_to_rgb`): grayscale, nearer is brighter, normalised per image over the masked pixels;
- normals (`normal_to_rgb`): the usual normal-map colours, i.e. the outward normal in viewer coordinates
  (x right, y up, z towards the viewer) mapped from [-1, 1] to [0, 1]: facing the camera is bluish
  (0.5, 0.5, 1), facing right reddish, facing up greenish;
- shading (`shading_to_rgb`): gray, clamped to [0, 1] or, with ``fit=True``, scaled down per image where it
  exceeds 1.

`make_grid` / `save_grid` tile images, `save_animation` writes animated GIF, WebP or PNG (APNG), and `turntable`
/ `save_turntable` render faces under a looping yaw sweep. Every file is written atomically
(`latentface.fileio.write_atomic`); parent folders are created as needed.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentface.fileio import write_atomic

if TYPE_CHECKING:
    from latentface.model import LatentFace
    from latentface.outputs import FaceCodes

__all__ = [
    "ANIMATION_FORMATS",
    "depth_to_rgb",
    "make_grid",
    "normal_to_rgb",
    "save_animation",
    "save_grid",
    "save_turntable",
    "shading_to_rgb",
    "turntable",
]

ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG"}
"""Animation file suffixes and the Pillow format each is written in (``.png`` is APNG)."""

# Package normals point into the surface (Unsup3D's convention: a face turned to the camera has +z, like the
# light direction); the outward normal in viewer coordinates (x right, y up, z towards the viewer) is
# (-x, y, z) of them.
_NORMAL_TO_VIEWER = (-1.0, 1.0, 1.0)


def _check_mask(mask: Tensor | None, shape: torch.Size) -> Tensor | None:
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return None if mask is None else mask.to(torch.bool)


def depth_to_rgb(
    depth: Tensor, mask: Tensor | None = None, lo: float | None = None, hi: float | None = None
) -> Tensor:
    """Grayscale depth: nearer (smaller depth) is brighter.

    Args:
        depth: (B, H, W) depth maps (distance from the camera).
        mask: optional (B, H, W) bool, True on the pixels to show; the others (and non-finite depths) are black.
        lo: depth shown white; by default the smallest depth of each image over its masked, finite pixels.
        hi: depth shown black; by default the largest one. Depths outside [lo, hi] are clamped.

    Returns:
        (B, 3, H, W) float images in [0, 1]. An image whose shown depths are all equal is white there (with
        automatic `lo` and `hi`).
    """
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape (B, H, W), got {tuple(depth.shape)}")
    if lo is not None and hi is not None and not hi > lo:
        raise ValueError(f"hi must be larger than lo, got lo={lo}, hi={hi}")
    d = depth.detach().float()
    shown = torch.isfinite(d)
    mask = _check_mask(mask, d.shape)
    if mask is not None:
        shown &= mask.to(d.device)
    near = torch.where(shown, d, math.inf).amin(dim=(1, 2)) if lo is None else torch.full_like(d[:, 0, 0], lo)
    far = torch.where(shown, d, -math.inf).amax(dim=(1, 2)) if hi is None else torch.full_like(d[:, 0, 0], hi)
    near, far = near[:, None, None], far[:, None, None]
    value = torch.where(far > near, (far - d) / (far - near), (d <= far).float()).clamp(0, 1)
    return torch.where(shown, value, 0.0)[:, None].expand(-1, 3, -1, -1).contiguous()


def normal_to_rgb(normal: Tensor, mask: Tensor | None = None) -> Tensor:
    """Normal-map colours: the outward normal in viewer coordinates (x right, y up, z towards the viewer),
    ``(n_viewer + 1) / 2``.

    The package's normals (`Rendering.normal`, `latentface.render.shading.normals_from_depth`) are in camera
    space (x right, y down, z forward) and point into the surface, so a face turned to the camera has
    n = (0, 0, 1); its outward normal in viewer coordinates is ``n * (-1, 1, 1)``. Hence facing the camera is
    (0.5, 0.5, 1) (bluish), facing right is reddish and facing up is greenish.

    Args:
        normal: (B, 3, H, W) unit normals.
        mask: optional (B, H, W) bool, True on the pixels to show; the others are black.

    Returns:
        (B, 3, H, W) float images in [0, 1].
    """
    if normal.ndim != 4 or normal.shape[1] != 3:
        raise ValueError(f"normal must have shape (B, 3, H, W), got {tuple(normal.shape)}")
    n = normal.detach().float()
    sign = torch.tensor(_NORMAL_TO_VIEWER, device=n.device).view(1, 3, 1, 1)
    rgb = ((n * sign + 1) / 2).clamp(0, 1)
    mask = _check_mask(mask, n[:, 0].shape)
    return rgb if mask is None else torch.where(mask.to(n.device)[:, None], rgb, 0.0)


def shading_to_rgb(shading: Tensor, *, fit: bool = False) -> Tensor:
    """Gray shading images.

    Lambertian shading is ``ambient + diffuse * cos`` and may exceed 1 (up to 2 with the model's light ranges); only
    the product with the albedo is pinned by the image, so a model may put a light face's brightness into its
    shading. Clamping then shows such a face's shading as flat white.

    Args:
        shading: (B, 1, H, W) shading (`Rendering.shading`).
        fit: divide each image whose maximum exceeds 1 by that maximum (its brightest pixel shows white and
            nothing is clipped); images within [0, 1] are unchanged. False clamps to [0, 1].

    Returns:
        (B, 3, H, W) float images in [0, 1].
    """
    if shading.ndim != 4 or shading.shape[1] != 1:
        raise ValueError(f"shading must have shape (B, 1, H, W), got {tuple(shading.shape)}")
    s = shading.detach().float()
    if fit:
        s = s / s.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1)
    return s.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def _as_batch(images: Tensor | Sequence[Tensor]) -> Tensor:
    """(N, C, H, W) / (C, H, W) tensors, C in (1, 3), or a list of them -> (N, 3, H, W) float32 CPU in [0, 1]."""
    items = [images] if isinstance(images, Tensor) else list(images)
    batches = []
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"images[{i}] must be a tensor, got {type(t).__name__}")
        t = t[None] if t.ndim == 3 else t
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, C, H, W) or (C, H, W) with C = 1 or 3, got {tuple(t.shape)}")
        batches.append(t.detach().to("cpu", torch.float32).expand(-1, 3, -1, -1))
    if len({tuple(b.shape[-2:]) for b in batches}) > 1:
        raise ValueError(f"images must share one size, got {sorted({tuple(b.shape[-2:]) for b in batches})}")
    if not batches or sum(len(b) for b in batches) == 0:
        raise ValueError("images is empty")
    return torch.cat(batches).nan_to_num(nan=0.0).clamp(0, 1)


def _to_pil(image: Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB image."""
    array = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def make_grid(
    images: Tensor | Sequence[Tensor], nrow: int = 8, padding: int = 2, pad_value: float = 1.0
) -> Tensor:
    """Tile images row by row, as ``torchvision.utils.make_grid``.

    Args:
        images: (N, 3, H, W) or (N, 1, H, W) tensor (gray is repeated to RGB), or a list of such tensors and
            (C, H, W) images, all of one size H x W. Values are clamped to [0, 1] (NaN becomes 0).
        nrow: images per row; the grid has ``min(nrow, N)`` columns and ``ceil(N / columns)`` rows.
        padding: pixels between the images and around the grid.
        pad_value: value of the padding and of the empty cells of the last row.

    Returns:
        (3, rows * (H + padding) + padding, columns * (W + padding) + padding) float32 tensor on the CPU;
        image k has its top-left pixel at ``(padding + (k // columns) * (H + padding),
        padding + (k % columns) * (W + padding))``.
    """
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    batch = _as_batch(images)
    n, _, h, w = batch.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = torch.full((3, rows * (h + padding) + padding, cols * (w + padding) + padding), float(pad_value))
    for k, image in enumerate(batch):
        top, left = padding + (k // cols) * (h + padding), padding + (k % cols) * (w + padding)
        grid[:, top:top + h, left:left + w] = image
    return grid


def save_grid(
    images: Tensor | Sequence[Tensor], path: str | os.PathLike, nrow: int = 8, padding: int = 2,
    pad_value: float = 1.0,
) -> Path:
    """Write `make_grid` of the images as an 8-bit RGB PNG (atomically; parent folders are created).

    Args:
        images: as in `make_grid`.
        path: destination; its suffix must be ``.png``.
        nrow: images per row.
        padding: pixels between the images and around the grid.
        pad_value: value of the padding, in [0, 1].

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_grid writes PNG files, so the path must end in .png, got {str(path)!r}")
    buffer = io.BytesIO()
    _to_pil(make_grid(images, nrow, padding, pad_value).clamp(0, 1)).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def _animation_format(path: Path) -> str:
    fmt = ANIMATION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"animation suffix must be one of {', '.join(ANIMATION_FORMATS)}, got {str(path)!r}")
    return fmt


def _gif_frames(pictures: list[Image.Image]) -> list[Image.Image]:
    """Palette images sharing one 256-colour median-cut palette fitted to all frames (so colours do not flicker
    between frames), without dithering."""
    w, h = pictures[0].size
    strip = Image.new("RGB", (w, h * len(pictures)))
    for i, picture in enumerate(pictures):
        strip.paste(picture, (0, i * h))
    strip = strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    return [strip.crop((0, i * h, w, (i + 1) * h)) for i in range(len(pictures))]


def save_animation(frames: Tensor, path: str | os.PathLike, fps: float = 12, loop: int = 0) -> Path:
    """Write an animation, in the format of the path's suffix (atomically; parent folders are created).

    ``.gif``: one 256-colour median-cut palette shared by all frames, no dithering (dithering shimmers between
    frames), disposal 1 ("do not dispose": frames are opaque, so each replaces what it covers and unchanged
    areas stay). ``.webp``: lossless animated WebP. ``.png``: APNG. The encoders merge consecutive identical
    frames into one frame that lasts as long, so the file may hold fewer frames for the same playing time.

    Args:
        frames: (F, 3, H, W) or (F, 1, H, W) tensor (or a list of frames, as in `make_grid`); values are
            clamped to [0, 1] and stored as 8-bit RGB.
        path: destination ending in ``.gif``, ``.webp`` or ``.png``.
        fps: frames per second; each frame lasts ``round(1000 / fps)`` ms (GIF stores multiples of 10 ms).
        loop: number of loops, 0 for forever.

    Returns:
        The path written.
    """
    path = Path(path)
    fmt = _animation_format(path)
    if not (math.isfinite(fps) and fps > 0) or loop < 0:
        raise ValueError(f"fps must be positive and loop >= 0, got fps={fps}, loop={loop}")
    pictures = [_to_pil(frame) for frame in _as_batch(frames)]
    options: dict[str, object] = {"save_all": True, "duration": round(1000 / fps), "loop": loop}
    if fmt == "GIF":
        pictures = _gif_frames(pictures)
        options.update(disposal=1, optimize=False)
    elif fmt == "WEBP":
        options.update(lossless=True)
    buffer = io.BytesIO()
    pictures[0].save(buffer, format=fmt, append_images=pictures[1:], **options)
    return write_atomic(path, buffer.getvalue())


TURNTABLE_VIEWS_PER_CALL = 8
"""Views `turntable` renders per `LatentFace.render_views` call (one decode each; bounds the memory held)."""


@torch.no_grad()
def turntable(
    model: LatentFace,
    codes: FaceCodes,
    frames: int = 24,
    max_yaw: float = 45.0,
    pitch: float = 0.0,
    light: Tensor | None = None,
    background: float | Sequence[float] = 1.0,
) -> Tensor:
    """Render every face under a looping yaw sweep ``yaw_k = max_yaw * sin(2 pi k / frames)``, k < frames.

    Frame 0 is the frontal yaw (0) at the given pitch; the sweep turns towards ``+max_yaw``, back through 0
    towards ``-max_yaw`` and returns, so the frames loop smoothly. It reaches ``+-max_yaw`` when `frames` is a
    multiple of 4; when ``frames % 4 == 2`` its two largest (and two smallest) yaws are equal neighbours, which
    `save_animation` stores as one frame of double length. Renders with `LatentFace.render_views` in the model's
    current mode (call ``model.eval()`` first), without gradients.

    Args:
        model: the model that encoded `codes`.
        codes: `FaceCodes` of B faces (e.g. from `LatentFace.encode`).
        frames: number of frames.
        max_yaw: largest yaw in degrees (see `LatentFace.pose_code` for directions).
        pitch: pitch of every frame, in degrees.
        light: optional light code (4,) or (B, 4) to relight with, as in `LatentFace.render`.
        background: gray value, or (r, g, b), of the pixels the face does not cover (`Rendering.mask`).

    Returns:
        (B, frames, 3, H, W) float images in [0, 1] on the model's device.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    yaws = [max_yaw * math.sin(2 * math.pi * k / frames) for k in range(frames)]
    views = model.pose_code(yaw=yaws, pitch=pitch)
    bg = torch.as_tensor(background, dtype=torch.float32).flatten()
    if bg.numel() not in (1, 3):
        raise ValueError(f"background must be a number or (r, g, b), got {background!r}")
    bg = bg.expand(3).reshape(1, 3, 1, 1)
    images = []
    for chunk in views.split(TURNTABLE_VIEWS_PER_CALL):  # only the images are kept, not whole renderings
        for r in model.render_views(codes, chunk, light=light):
            assert r.image is not None and r.mask is not None  # a posed rendering always has them
            image = r.image.clamp(0, 1)
            images.append(torch.where(r.mask[:, None], image, bg.to(image)))
    return torch.stack(images, dim=1)


def save_turntable(
    model: LatentFace,
    codes: FaceCodes,
    path: str | os.PathLike,
    frames: int = 24,
    max_yaw: float = 45.0,
    pitch: float = 0.0,
    fps: float = 12,
    *,
    light: Tensor | None = None,
    background: float | Sequence[float] = 1.0,
) -> Path:
    """Write the `turntable` of one face as an animation (`save_animation`: ``.gif``, ``.webp`` or ``.png``).

    Args:
        model: the model that encoded `codes`.
        codes: `FaceCodes` of exactly one face.
        path: destination; its suffix picks the format.
        frames: number of frames of the loop.
        max_yaw: largest yaw in degrees.
        pitch: pitch of every frame, in degrees.
        fps: frames per second.
        light: optional light code to relight with.
        background: gray value, or (r, g, b), outside the face.

    Returns:
        The path written.
    """
    path = Path(path)
    _animation_format(path)
    if len(codes) != 1:
        raise ValueError(f"save_turntable takes the codes of one face, got a batch of {len(codes)}")
    video = turntable(model, codes, frames, max_yaw, pitch, light=light, background=background)
    return save_animation(video[0], path, fps=fps)

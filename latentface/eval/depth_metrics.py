"""Depth reconstruction metrics of Unsup3D (SIDE, MAD, MAE, MSE), the relief and normal slopes, and the constant and
mean-depth baselines.

The definitions follow Unsup3D's test code: ``Unsup3D.forward`` with ``load_gt_depth`` (``unsup3d/model.py``),
``compute_sc_inv_err`` and ``compute_angular_distance`` (``unsup3d/utils.py``). Every metric is computed per image
over an evaluation mask: the ground-truth foreground eroded by one pixel, times the valid prediction mask eroded
the same way. An image whose mask is empty scores NaN (0/0, as in Unsup3D) and a ``RuntimeWarning`` is issued;
:func:`summarize` leaves such images out and counts them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.render import normals_from_depth

_ERODE_THRESHOLD = 0.99  # Unsup3D: a pixel survives when its whole 3x3 neighbourhood is inside the mask


@dataclass(frozen=True)
class DepthMetrics:
    """Per-image depth metrics, each a (B,) tensor.

    Attributes:
        side: scale-invariant depth error (Unsup3D's ``SIE_masked``), in log-depth units.
        mad: mean angle deviation between normals (``NorErr_masked``), in degrees.
        mae: masked mean absolute depth error (``MAE_masked``), in depth units.
        mse: masked mean squared depth error (``MSE_masked``).
        relief: least-squares slope of the predicted on the ground-truth depth over the mask (`relief`): 1 for the
            true relief, above 1 for an exaggerated one (not one of Unsup3D's metrics; SIDE is blind to a depth
            scaled about the camera, which scales the relief as well).
        normal_slope: least-squares slope of the predicted on the ground-truth normals' z (`normal_slope`): 1 when
            the surface turns away from the camera as the true one does, below 1 for a flatter-facing surface.
        pixels: number of pixels in each image's evaluation mask.
    """

    side: Tensor
    mad: Tensor
    mae: Tensor
    mse: Tensor
    relief: Tensor
    normal_slope: Tensor
    pixels: Tensor


DEPTH_METRICS = ("side", "mad", "mae", "mse", "relief", "normal_slope")
"""The per-image metrics of :class:`DepthMetrics`, in order (``pixels`` is a count)."""


@dataclass(frozen=True)
class Summary:
    """A metric aggregated over a dataset, as Unsup3D's ``save_scores``: mean and std over images.

    Attributes:
        mean: mean over the images with a finite value.
        std: unbiased standard deviation over the same images (``torch.std``; NaN for fewer than 2).
        count: number of images averaged.
        excluded: number of NaN images (empty evaluation masks) left out.
    """

    mean: float
    std: float
    count: int
    excluded: int


def erode_mask(mask: Tensor) -> Tensor:
    """Erode masks by one pixel as Unsup3D: 3x3 average pooling with zero padding, kept where > 0.99.

    The zero padding makes the outside of the image background, so the one-pixel image border is always removed.

    Args:
        mask: (B, H, W) masks, bool or 0/1.

    Returns:
        (B, H, W) bool: pixels whose 3x3 neighbourhood lies entirely inside the mask.
    """
    pooled = F.avg_pool2d(mask.to(torch.float32)[:, None], 3, stride=1, padding=1, count_include_pad=True)
    return pooled[:, 0] > _ERODE_THRESHOLD


def foreground_mask(gt_depth: Tensor) -> Tensor:
    """Ground-truth foreground: pixels nearer than the farthest depth of their image (the background plane).

    Unsup3D compares with the maximum over the whole batch; taken per image here, so that a score does not depend
    on the batch. The two agree whenever every image shows background at the common far depth (its BFM faces).

    Args:
        gt_depth: (B, H, W) ground-truth depth.

    Returns:
        (B, H, W) bool.
    """
    far = gt_depth.flatten(1).amax(1)
    return gt_depth < far[:, None, None]


def evaluation_mask(
    gt_depth: Tensor, gt_mask: Tensor | None = None, pred_mask: Tensor | None = None, *, erode: bool = True
) -> Tensor:
    """The mask SIDE, MAD, MAE and MSE average over: GT foreground times valid prediction, each eroded.

    Args:
        gt_depth: (B, H, W) ground-truth depth; gives the foreground when `gt_mask` is None.
        gt_mask: (B, H, W) bool ground-truth foreground; default :func:`foreground_mask` of `gt_depth`.
        pred_mask: (B, H, W) bool valid prediction (Unsup3D: reconstructed depth below ``max_depth + margin``);
            default everywhere valid.
        erode: erode both masks by one pixel (:func:`erode_mask`) before intersecting them, as Unsup3D.

    Returns:
        (B, H, W) bool.
    """
    _check_maps(gt_depth=gt_depth, gt_mask=gt_mask, pred_mask=pred_mask)
    gt = foreground_mask(gt_depth) if gt_mask is None else gt_mask.bool()
    pred = torch.ones_like(gt) if pred_mask is None else pred_mask.bool()
    if erode:
        gt, pred = erode_mask(gt), erode_mask(pred)
    return gt & pred


def angular_error(pred_normal: Tensor, gt_normal: Tensor, *, renormalize: bool = False) -> Tensor:
    """Per-pixel angle between normals in degrees: ``acos(clamp(<n_pred, n_gt>, -1, 1))``
    (``compute_angular_distance``).

    Args:
        pred_normal: (B, H, W, 3) predicted normals.
        gt_normal: (B, H, W, 3) ground-truth normals.
        renormalize: scale both to unit length first. Unsup3D does not: its normals (and
            :func:`latentface.render.normals_from_depth`) are normalised with a 1e-7 epsilon, about 0.3% short at
            64 px, so identical normals already differ by about 6.5 degrees at 64 px (13 degrees at 128 px).

    Returns:
        (B, H, W) angles in degrees.
    """
    if pred_normal.shape != gt_normal.shape or pred_normal.ndim != 4 or pred_normal.shape[-1] != 3:
        raise ValueError(
            f"normals must both be (B, H, W, 3), got {tuple(pred_normal.shape)} and {tuple(gt_normal.shape)}"
        )
    if renormalize:
        pred_normal, gt_normal = F.normalize(pred_normal, dim=-1), F.normalize(gt_normal, dim=-1)
    return torch.rad2deg((pred_normal * gt_normal).sum(-1).clamp(-1, 1).acos())


def side(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor | None = None,
    pred_mask: Tensor | None = None,
    *,
    erode: bool = True,
) -> Tensor:
    """Scale-invariant depth error per image: ``sqrt(masked mean of (D - masked mean D)^2)``, ``D = log pred - log gt``.

    Args:
        pred_depth: (B, H, W) predicted depth in the input view, positive inside the mask.
        gt_depth: (B, H, W) ground-truth depth, positive inside the mask.
        gt_mask, pred_mask, erode: the evaluation mask, see :func:`evaluation_mask`.

    Returns:
        (B,) SIDE; NaN for an image with an empty mask.
    """
    mask = _scored_mask(pred_depth, gt_depth, gt_mask, pred_mask, erode)
    return _side(pred_depth, gt_depth, mask)


def mad(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor | None = None,
    pred_mask: Tensor | None = None,
    *,
    erode: bool = True,
    fov: float = 10.0,
    pred_normal: Tensor | None = None,
    gt_normal: Tensor | None = None,
    renormalize: bool = False,
) -> Tensor:
    """Mean angle deviation per image: masked mean of the angle between predicted and GT normals, in degrees.

    Args:
        pred_depth: (B, H, W) predicted depth in the input view.
        gt_depth: (B, H, W) ground-truth depth.
        gt_mask, pred_mask, erode: the evaluation mask, see :func:`evaluation_mask`.
        fov: camera field of view in degrees (``LatentFaceConfig.fov``), for normals computed from depth.
        pred_normal: (B, H, W, 3) predicted normals; default :func:`~latentface.render.normals_from_depth`.
        gt_normal: (B, H, W, 3) ground-truth normals; default from `gt_depth` likewise.
        renormalize: see :func:`angular_error`; False reproduces Unsup3D.

    Returns:
        (B,) MAD in degrees; NaN for an image with an empty mask.
    """
    mask = _scored_mask(pred_depth, gt_depth, gt_mask, pred_mask, erode)
    pred_normal, gt_normal = _normals(pred_depth, gt_depth, fov, pred_normal, gt_normal)
    return _masked_mean(angular_error(pred_normal, gt_normal, renormalize=renormalize), mask)


def depth_metrics(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor | None = None,
    pred_mask: Tensor | None = None,
    *,
    erode: bool = True,
    fov: float = 10.0,
    pred_normal: Tensor | None = None,
    gt_normal: Tensor | None = None,
    renormalize: bool = False,
) -> DepthMetrics:
    """SIDE, MAD, MAE and MSE per image over one evaluation mask, as Unsup3D's test pass, and the relief and normal
    slopes.

    Args:
        pred_depth, gt_depth, gt_mask, pred_mask, erode, fov, pred_normal, gt_normal, renormalize: see :func:`mad`.

    Returns:
        :class:`DepthMetrics`; NaN metrics for images with an empty mask.
    """
    mask = _scored_mask(pred_depth, gt_depth, gt_mask, pred_mask, erode)
    pred_normal, gt_normal = _normals(pred_depth, gt_depth, fov, pred_normal, gt_normal)
    error = pred_depth - gt_depth
    return DepthMetrics(
        side=_side(pred_depth, gt_depth, mask),
        mad=_masked_mean(angular_error(pred_normal, gt_normal, renormalize=renormalize), mask),
        mae=_masked_mean(error.abs(), mask),
        mse=_masked_mean(error.square(), mask),
        relief=_slope(pred_depth, gt_depth, mask),
        normal_slope=_slope(pred_normal[..., 2], gt_normal[..., 2], mask),
        pixels=mask.flatten(1).sum(1),
    )


def summarize(values: Tensor | Sequence[Tensor]) -> Summary:
    """Mean and unbiased std over images (NaN images, i.e. empty masks, left out and counted).

    Args:
        values: per-image values, a (N,) tensor or a sequence of per-batch (B,) tensors.

    Returns:
        :class:`Summary`.
    """
    flat = values.reshape(-1) if isinstance(values, Tensor) else torch.cat([v.reshape(-1) for v in values])
    flat = flat.detach().to(torch.float64)
    finite = flat[~flat.isnan()]
    mean = finite.mean().item() if finite.numel() else math.nan
    std = finite.std().item() if finite.numel() > 1 else math.nan
    return Summary(mean=mean, std=std, count=finite.numel(), excluded=flat.numel() - finite.numel())


def summarize_depth_metrics(results: Iterable[DepthMetrics]) -> dict[str, Summary]:
    """Aggregate per-batch :class:`DepthMetrics` over a dataset.

    Args:
        results: the metrics of each batch.

    Returns:
        ``{name: Summary}`` for every metric of :class:`DepthMetrics` but ``pixels``.
    """
    batches = list(results)
    return {name: summarize([getattr(b, name) for b in batches]) for name in DEPTH_METRICS}


def constant_depth_baseline(gt_depth: Tensor, depth: float) -> Tensor:
    """Constant-depth baseline: a fronto-parallel plane at `depth` for every image.

    SIDE does not depend on `depth` (scale invariance); MAD only through the normalisation epsilon of the normals.

    Args:
        gt_depth: (B, H, W) ground truth, giving shape, dtype and device.
        depth: the plane's depth.

    Returns:
        (B, H, W) predicted depth.
    """
    return torch.full_like(gt_depth, depth)


def mean_gt_depth(gt_depths: Tensor | Iterable[Tensor]) -> Tensor:
    """The average ground-truth depth map of a set (every pixel, background included), for the mean-depth baseline.

    Args:
        gt_depths: (N, H, W) depth maps, or an iterable of (B, H, W) batches (streamed, accumulated in float64).

    Returns:
        (H, W) mean depth map, in the dtype of the inputs.
    """
    batches = [gt_depths] if isinstance(gt_depths, Tensor) else gt_depths
    total: Tensor | None = None
    count = 0
    dtype = torch.float32
    for batch in batches:
        _check_maps(gt_depth=batch)
        dtype = batch.dtype
        part = batch.detach().to(torch.float64).sum(0)
        total = part if total is None else total + part
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("mean_gt_depth needs at least one depth map")
    return (total / count).to(dtype)


def mean_depth_baseline(gt_depth: Tensor, mean_depth: Tensor) -> Tensor:
    """Mean-depth baseline: the same average GT depth map (:func:`mean_gt_depth`) predicted for every image.

    Args:
        gt_depth: (B, H, W) ground truth, giving shape, dtype and device.
        mean_depth: (H, W) mean depth map.

    Returns:
        (B, H, W) predicted depth.
    """
    if mean_depth.shape != gt_depth.shape[1:]:
        raise ValueError(f"mean_depth {tuple(mean_depth.shape)} does not match depth maps {tuple(gt_depth.shape)}")
    return mean_depth.to(gt_depth).expand_as(gt_depth).clone()


def _side(pred_depth: Tensor, gt_depth: Tensor, mask: Tensor) -> Tensor:
    """SIDE per image over a given mask (``compute_sc_inv_err`` summed over the mask, then the square root)."""
    if ((pred_depth <= 0) & mask).any() or ((gt_depth <= 0) & mask).any():
        raise ValueError("SIDE needs positive predicted and ground-truth depth inside the evaluation mask")
    diff = pred_depth.log() - gt_depth.log()
    mean = _masked_mean(diff, mask)
    return _masked_mean((diff - mean[:, None, None]).square(), mask).sqrt()


def relief(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor | None = None,
    pred_mask: Tensor | None = None,
    *,
    erode: bool = True,
) -> Tensor:
    """Relief scale per image: the least-squares slope of predicted on ground-truth depth over the evaluation mask.

    Both depths are centred on their masked means, so a depth shifted as a whole keeps its slope; a relief
    predicted twice as deep as the true one scores 2. Under a near-orthographic camera a deeper face turned less
    forms nearly the same image, so this scale and the predicted head angles trade against each other.

    Args:
        pred_depth: (B, H, W) predicted depth in the input view.
        gt_depth: (B, H, W) ground-truth depth.
        gt_mask, pred_mask, erode: the evaluation mask, see :func:`evaluation_mask`.

    Returns:
        (B,) slopes; NaN for an image with an empty mask or a flat ground truth inside it.
    """
    mask = _scored_mask(pred_depth, gt_depth, gt_mask, pred_mask, erode)
    return _slope(pred_depth, gt_depth, mask)


def normal_slope(
    pred_depth: Tensor,
    gt_depth: Tensor,
    gt_mask: Tensor | None = None,
    pred_mask: Tensor | None = None,
    *,
    erode: bool = True,
    fov: float = 10.0,
    pred_normal: Tensor | None = None,
    gt_normal: Tensor | None = None,
) -> Tensor:
    """Per image the least-squares slope of the predicted on the ground-truth normals' z over the evaluation mask.

    The z component is how directly a surface faces the camera. A slope below 1 means the prediction turns away
    from the camera less than the truth where the truth turns away (a flatter-facing surface, e.g. rounded sides
    smoothed out, or a depth map blurred), even at the true relief.

    Args:
        pred_depth, gt_depth, gt_mask, pred_mask, erode, fov, pred_normal, gt_normal: see :func:`mad`.

    Returns:
        (B,) slopes; NaN for an image with an empty mask or ground-truth normals of one z inside it.
    """
    mask = _scored_mask(pred_depth, gt_depth, gt_mask, pred_mask, erode)
    pred_normal, gt_normal = _normals(pred_depth, gt_depth, fov, pred_normal, gt_normal)
    return _slope(pred_normal[..., 2], gt_normal[..., 2], mask)


def _slope(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """Least-squares slope of (B, H, W) `pred` on `gt` over the mask, both centred; NaN where `gt` is constant."""
    p = pred.double() - _masked_mean(pred.double(), mask)[:, None, None]
    g = gt.double() - _masked_mean(gt.double(), mask)[:, None, None]
    spread = _masked_mean(g.square(), mask)
    slope = _masked_mean(p * g, mask) / spread
    flat = spread <= 1e-12 * _masked_mean(gt.double().square(), mask)  # constant up to rounding
    return torch.where(flat, torch.nan, slope).to(pred.dtype)


def _normals(pred_depth: Tensor, gt_depth: Tensor, fov: float, pred_normal: Tensor | None,
             gt_normal: Tensor | None) -> tuple[Tensor, Tensor]:
    """The given normals, or those computed from depth (:func:`~latentface.render.normals_from_depth`)."""
    pred_normal = normals_from_depth(pred_depth, fov) if pred_normal is None else pred_normal
    gt_normal = normals_from_depth(gt_depth, fov) if gt_normal is None else gt_normal
    return pred_normal, gt_normal


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, H, W) values over a (B, H, W) mask per image; 0/0 = NaN for an empty mask."""
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).flatten(1).sum(1)
    return total / mask.flatten(1).sum(1).to(values.dtype)


def _scored_mask(pred_depth: Tensor, gt_depth: Tensor, gt_mask: Tensor | None, pred_mask: Tensor | None,
                 erode: bool) -> Tensor:
    """The evaluation mask of a predicted and a true depth (shapes checked; a warning for images with none)."""
    _check_maps(pred_depth=pred_depth, gt_depth=gt_depth)
    mask = evaluation_mask(gt_depth, gt_mask, pred_mask, erode=erode)
    _warn_empty(mask)
    return mask


def _warn_empty(mask: Tensor) -> None:
    """Warn when some images have an empty evaluation mask (their metrics are NaN)."""
    empty = int((mask.flatten(1).sum(1) == 0).sum())
    if empty:
        warnings.warn(
            f"{empty} image(s) have an empty evaluation mask; their metrics are NaN", RuntimeWarning, stacklevel=3
        )


def _check_maps(**maps: Tensor | None) -> None:
    """Check that the given (B, H, W) maps all have the same shape."""
    shapes = {name: tuple(m.shape) for name, m in maps.items() if m is not None}
    if any(len(s) != 3 for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise ValueError(f"depth maps and masks must all be (B, H, W) of one shape, got {shapes}")

"""How well predicted pose and light follow the true ones: least-squares slope, intercept and correlation.

A slope of 1 with a correlation near 1 means the factor is recovered at its true scale; a slope well below 1 with a
high correlation means it is recovered in direction but shrunk (the rest explained by another factor, e.g. a
turned head partly painted into the texture or the depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from latentface.config import LatentFaceConfig
from latentface.render.codes import rescale

POSE_FACTORS = ("yaw", "pitch", "roll")
LIGHT_FACTORS = ("ambient", "diffuse", "light_x", "light_y")


@dataclass(frozen=True)
class LinearFit:
    """Least-squares fit ``predicted ~ slope * true + intercept`` over N items.

    Attributes:
        slope: the fitted slope (NaN when the true values do not vary).
        intercept: the fitted intercept.
        r: Pearson correlation of predicted and true values (NaN when either does not vary).
        count: N.
    """

    slope: float
    intercept: float
    r: float
    count: int


def linear_fit(predicted: Tensor, true: Tensor) -> LinearFit:
    """Fit ``predicted ~ slope * true + intercept`` (float64) and the correlation of the two.

    Args:
        predicted: (N,) predicted values.
        true: (N,) true values.

    Raises:
        ValueError: shapes differ, fewer than two items, or non-finite values.
    """
    if predicted.shape != true.shape or predicted.ndim != 1:
        raise ValueError(f"expected two (N,) tensors, got {tuple(predicted.shape)} and {tuple(true.shape)}")
    if len(true) < 2:
        raise ValueError("a fit needs at least two items")
    p, t = predicted.detach().double().cpu(), true.detach().double().cpu()
    if not (p.isfinite().all() and t.isfinite().all()):
        raise ValueError("values must be finite")
    pc, tc = p - p.mean(), t - t.mean()
    spread_t, spread_p = float(tc @ tc), float(pc @ pc)
    slope = float(pc @ tc) / spread_t if spread_t > 0 else math.nan
    r = float(pc @ tc) / math.sqrt(spread_t * spread_p) if spread_t > 0 and spread_p > 0 else math.nan
    intercept = float(p.mean()) - slope * float(t.mean()) if spread_t > 0 else math.nan
    return LinearFit(slope=slope, intercept=intercept, r=r, count=len(t))


def pose_light_fits(view: Tensor, light: Tensor, true_angles: Tensor, true_light: Tensor,
                    config: LatentFaceConfig) -> dict[str, LinearFit]:
    """Fits of predicted against true head angles (degrees) and light (strengths and direction).

    Args:
        view: (N, 6) predicted pose codes (`FaceCodes.pose`).
        light: (N, 4) predicted light codes (`FaceCodes.light`).
        true_angles: (N, 3) true yaw, pitch, roll in degrees (`latentface.render.codes.pose_code` conventions).
        true_light: (N, 4) true ambient, diffuse strengths and light direction x, y (the direction being
            ``normalise([x, y, 1])``, as `latentface.render.codes.light_code`).
        config: the predicting model's config (pose and light ranges).

    Returns:
        ``yaw``, ``pitch``, ``roll``, ``ambient``, ``diffuse``, ``light_x``, ``light_y`` -> `LinearFit`.
    """
    rot = config.xyz_rotation_range
    predicted = {
        "yaw": view[:, 1] * rot, "pitch": view[:, 0] * rot, "roll": view[:, 2] * rot,
        "ambient": rescale(light[:, 0], config.min_ambient, config.max_ambient),
        "diffuse": rescale(light[:, 1], config.min_diffuse, config.max_diffuse),
        "light_x": light[:, 2], "light_y": light[:, 3],
    }
    true = dict(zip(POSE_FACTORS, true_angles.unbind(1), strict=True)) | dict(
        zip(LIGHT_FACTORS, true_light.unbind(1), strict=True))
    return {name: linear_fit(predicted[name], true[name]) for name in (*POSE_FACTORS, *LIGHT_FACTORS)}

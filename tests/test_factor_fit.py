"""Pose and light fits (`latentface.eval.factor_fit`)."""

from __future__ import annotations

import math

import pytest
import torch

from latentface import LatentFaceConfig
from latentface.eval import linear_fit, pose_light_fits
from latentface.render.codes import light_code, pose_code


def test_linear_fit_by_hand() -> None:
    true = torch.tensor([0.0, 1.0, 2.0, 3.0])
    fit = linear_fit(2 * true + 1, true)
    assert (fit.slope, fit.intercept, fit.r, fit.count) == pytest.approx((2.0, 1.0, 1.0, 4))
    noisy = linear_fit(torch.tensor([1.0, 0.0, 3.0, 2.0]), true)
    # cov = (-1.5)(-0.5) + (-0.5)(-1.5) + (0.5)(1.5) + (1.5)(0.5) = 3; var(true) = var(pred) = 5
    assert (noisy.slope, noisy.intercept, noisy.r) == pytest.approx((0.6, 0.6, 0.6))
    flat = linear_fit(true, torch.ones(4))
    assert math.isnan(flat.slope) and math.isnan(flat.r)


@pytest.mark.parametrize(("predicted", "true"), [(torch.zeros(3), torch.zeros(4)), (torch.zeros(1), torch.zeros(1)),
                                                 (torch.tensor([0.0, math.nan]), torch.zeros(2))])
def test_linear_fit_rejects(predicted: torch.Tensor, true: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        linear_fit(predicted, true)


def test_pose_light_fits_in_physical_units() -> None:
    config = LatentFaceConfig(xyz_rotation_range=45.0, min_ambient=0.2, max_ambient=0.8)
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(50, 3, generator=g) * 2 - 1) * 30
    light = torch.cat([torch.rand(50, 2, generator=g) * 0.4 + 0.3, torch.rand(50, 2, generator=g) - 0.5], dim=1)
    direction = torch.cat([light[:, 2:], torch.ones(50, 1)], dim=1)
    # A model that sees half the yaw and everything else exactly.
    view = pose_code(config, yaw=angles[:, 0] / 2, pitch=angles[:, 1], roll=angles[:, 2])
    codes = light_code(config, ambient=light[:, 0], diffuse=light[:, 1], direction=direction)
    fits = pose_light_fits(view, codes, angles, light, config)
    assert fits["yaw"].slope == pytest.approx(0.5, abs=1e-5) and fits["yaw"].r == pytest.approx(1.0, abs=1e-6)
    for name in ("pitch", "roll", "ambient", "diffuse", "light_x", "light_y"):
        assert fits[name].slope == pytest.approx(1.0, abs=1e-4) and fits[name].r == pytest.approx(1.0, abs=1e-6)

"""Noise schedule and samplers: the `official` sampler reproduces diffusers 0.14.0, `ddim` is textbook DDIM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentface.diffusion import NoiseSchedule, sample, x0_loss

FIXTURE = Path(__file__).parent / "data" / "ddim_0_14_reference.npz"


def toy_denoiser(cond: torch.Tensor):
    """A deterministic stand-in for the network whose x0 predictions leave [-1, 1] (so clamping matters)."""
    return lambda x_t, t: 1.5 * torch.tanh(x_t * 0.8 + cond) + 0.3 * math.sin(t / 100)


def step_0_14(x0: torch.Tensor, x_t: torch.Tensor, a_prev: float) -> torch.Tensor:
    """diffusers 0.14.0 DDIM step for x0-prediction, eta 0, as that release computed it."""
    return math.sqrt(a_prev) * x0.clamp(-1, 1) + math.sqrt(1 - a_prev) * x0


def test_schedule_matches_released_constants() -> None:
    schedule = NoiseSchedule()
    assert schedule.timesteps(5) == [800, 600, 400, 200, 0]
    assert schedule.timesteps(10)[:2] == [900, 800]
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-5)
    with pytest.raises(ValueError):
        schedule.timesteps(0)


@pytest.mark.parametrize("steps", [1, 3, 5, 10])
def test_official_sampler_follows_0_14_step(steps: int) -> None:
    schedule = NoiseSchedule()
    gen = torch.Generator().manual_seed(steps)
    noise, cond = torch.randn(8, 256, generator=gen), torch.randn(8, 256, generator=gen)
    denoise = toy_denoiser(cond)
    x = noise
    ts = schedule.timesteps(steps)
    for i, t in enumerate(ts):
        a_prev = schedule.alphas_cumprod[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        x = step_0_14(denoise(x, t), x, a_prev)
    ours = sample(denoise, noise, schedule, steps, "official", 1.0)
    torch.testing.assert_close(ours, x, atol=1e-6, rtol=1e-6)
    # The last step returns the clamped x0 prediction.
    assert ours.abs().max() <= 1.0


def test_ddim_sampler_derives_noise_from_clamped_x0() -> None:
    schedule = NoiseSchedule()
    gen = torch.Generator().manual_seed(0)
    noise, cond = torch.randn(4, 16, generator=gen), torch.randn(4, 16, generator=gen)
    denoise = toy_denoiser(cond)
    x = noise
    ts = schedule.timesteps(5)
    for i, t in enumerate(ts):
        a_t = schedule.alphas_cumprod[t].item()
        a_prev = schedule.alphas_cumprod[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        x0 = denoise(x, t).clamp(-1, 1)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    torch.testing.assert_close(sample(denoise, noise, schedule, 5, "ddim", 1.0), x, atol=1e-5, rtol=1e-5)
    unclamped = sample(denoise, noise, schedule, 5, "ddim", None)
    assert unclamped.abs().max() > 1.0


def test_ddim_sampler_matches_current_diffusers_scheduler() -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(prediction_type="sample")
    scheduler.set_timesteps(5)
    gen = torch.Generator().manual_seed(3)
    noise, cond = torch.randn(4, 32, generator=gen), torch.randn(4, 32, generator=gen)
    denoise = toy_denoiser(cond)
    x = noise[:, :, None, None]
    for t in scheduler.timesteps:
        out = denoise(x[:, :, 0, 0], int(t))[:, :, None, None]
        x = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(
        sample(denoise, noise, NoiseSchedule(), 5, "ddim", 1.0), x[:, :, 0, 0], atol=1e-5, rtol=1e-5
    )


@pytest.mark.skipif(not FIXTURE.exists(), reason="diffusers 0.14.0 reference fixture not generated")
def test_official_sampler_matches_recorded_diffusers_0_14() -> None:
    data = np.load(FIXTURE)
    meta = json.loads(str(data["meta"]))
    schedule = NoiseSchedule()
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), data["alphas_cumprod"], rtol=0, atol=0)
    for steps in meta["step_counts"]:
        noise = torch.from_numpy(data[f"x_T_{steps}"]).reshape(-1, 256)
        cond = torch.from_numpy(data["cond"]).reshape(-1, 256)
        assert schedule.timesteps(steps) == data[f"timesteps_{steps}"].tolist()
        ours = sample(toy_denoiser(cond), noise, schedule, steps, "official", 1.0)
        ref = torch.from_numpy(data[f"prev_sample_{steps}"][-1]).reshape(-1, 256)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_x0_loss_is_snr_weighted_mse() -> None:
    schedule = NoiseSchedule()
    x0 = torch.randn(16, 8)
    denoise = lambda x_t, t: x_t * 0.5  # noqa: E731
    loss = x0_loss(denoise, x0, schedule, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 1000, (16,), generator=gen)
    noise = torch.randn(16, 8, generator=gen)
    a = schedule.alphas_cumprod[t][:, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    expected = (a / (1 - a) * (0.5 * x_t - x0) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    capped = x0_loss(denoise, x0, schedule, torch.Generator().manual_seed(7), snr_gamma=5.0)
    torch.testing.assert_close(capped, ((a / (1 - a)).clamp(max=5.0) * (0.5 * x_t - x0) ** 2).mean())
    assert (a / (1 - a) > 5).any() and capped < loss  # the cap changed some weights
    with pytest.raises(ValueError, match="snr_gamma"):
        x0_loss(denoise, x0, schedule, snr_gamma=0.0)

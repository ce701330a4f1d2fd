"""Noise schedule, DDIM samplers (``official`` and ``ddim``) and the x0 training loss of the RDM."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Denoise = Callable[[Tensor, int], Tensor]
"""A function ``(x_t, t) -> predicted x0`` with the condition already bound."""


class NoiseSchedule:
    """Linear-beta schedule; cumulative alphas in float32, as the released scheduler computes them.

    Args:
        num_train_timesteps: number of diffusion steps in training.
        beta_start: first beta.
        beta_end: last beta.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        self.num_train_timesteps = num_train_timesteps
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32, device="cpu")
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    def timesteps(self, steps: int) -> list[int]:
        """Sampling timesteps, evenly spaced from the start: 5 steps of 1000 give [800, 600, 400, 200, 0]."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be in [1, {self.num_train_timesteps}], got {steps}")
        ratio = self.num_train_timesteps // steps
        return [i * ratio for i in reversed(range(steps))]

    def alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        """Cumulative alpha at timesteps `t` (B,), shaped (B, 1) on `like`'s device and dtype."""
        return self.alphas_cumprod.to(like.device)[t].to(like.dtype)[:, None]

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Forward process: ``sqrt(a_t) * x0 + sqrt(1 - a_t) * noise`` for per-sample timesteps `t`."""
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def snr(self, t: Tensor, like: Tensor) -> Tensor:
        """Signal-to-noise ratio ``a_t / (1 - a_t)``, shaped (B, 1)."""
        a = self.alpha_bar(t, like)
        return a / (1 - a)


def sample(
    denoise: Denoise,
    noise: Tensor,
    schedule: NoiseSchedule,
    steps: int = 5,
    sampler: str = "official",
    clip_sample: float | None = 1.0,
) -> Tensor:
    """Deterministic (eta 0) DDIM sampling of x0 from start noise x_T.

    ``official`` reproduces the released code (diffusers 0.14.0, x0-prediction): the clamped x0 scales the
    signal term but the unclamped prediction stands in for the noise in the direction term, and the last
    step returns ``clamp(x0)``. ``ddim`` is the textbook update, which derives the noise from the clamped x0.

    Args:
        denoise: ``(x_t, t) -> x0`` prediction.
        noise: start noise x_T, (B, D).
        schedule: the noise schedule.
        steps: number of DDIM steps.
        sampler: ``"official"`` or ``"ddim"``.
        clip_sample: clamp range for the predicted x0; ``None`` disables clamping.

    Returns:
        The sample x0, (B, D).
    """
    if sampler not in ("official", "ddim"):
        raise ValueError(f"sampler must be 'official' or 'ddim', got {sampler!r}")
    timesteps = schedule.timesteps(steps)
    ratio = schedule.num_train_timesteps // steps
    alphas = schedule.alphas_cumprod
    x = noise
    for t in timesteps:
        a_t = alphas[t]
        a_prev = alphas[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
        x0 = denoise(x, t)
        x0_clipped = x0.clamp(-clip_sample, clip_sample) if clip_sample is not None else x0
        if sampler == "official":
            direction = x0
        else:
            direction = (x - a_t.sqrt().item() * x0_clipped) / (1 - a_t).sqrt().item()
        x = a_prev.sqrt().item() * x0_clipped + (1 - a_prev).sqrt().item() * direction
    return x


def x0_loss(denoise: Callable[[Tensor, Tensor], Tensor], x0: Tensor, schedule: NoiseSchedule,
            generator: torch.Generator | None = None, snr_gamma: float | None = None) -> Tensor:
    """SNR-weighted x0-prediction loss: mean of ``SNR(t) * (denoise(x_t, t) - x0)^2``, t uniform per sample.

    Args:
        denoise: ``(x_t, t) -> x0`` with `t` a (B,) tensor and the condition already bound.
        x0: clean targets (B, D).
        schedule: the noise schedule.
        generator: random source for t and the noise.
        snr_gamma: None for the released weight SNR(t); a number caps it, ``min(SNR(t), snr_gamma)`` (Min-SNR
            weighting, Hang et al. 2023), so the nearly clean timesteps no longer dominate the loss.

    Returns:
        Scalar loss.
    """
    if snr_gamma is not None and not snr_gamma > 0:
        raise ValueError(f"snr_gamma must be positive or None, got {snr_gamma}")
    device = generator.device if generator is not None else x0.device
    t = torch.randint(0, schedule.num_train_timesteps, (x0.shape[0],), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype).to(x0.device)
    t = t.to(x0.device)
    prediction = denoise(schedule.add_noise(x0, noise, t), t)
    weight = schedule.snr(t, x0)
    if snr_gamma is not None:
        weight = weight.clamp(max=snr_gamma)
    return (weight * (prediction - x0) ** 2).mean()

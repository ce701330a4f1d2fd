"""Shared fixtures: small, seeded models that run fast on a CPU."""

from __future__ import annotations

import pytest
import torch

from latentface import LatentFace, LatentFaceConfig


def tiny_config(**overrides: object) -> LatentFaceConfig:
    """A small configuration with every part of the architecture (widths shrunk)."""
    values: dict[str, object] = dict(ae_width=16, light_pose_width=8, latent_dim=32, confidence_latent_dim=16, rdm_width=32)
    values.update(overrides)
    return LatentFaceConfig(**values)  # type: ignore[arg-type]


def seeded_model(config: LatentFaceConfig, seed: int = 0) -> LatentFace:
    """A model with deterministic random weights (1-d parameters such as norms perturbed too), in eval mode."""
    torch.manual_seed(seed)
    model = LatentFace(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def tiny_model() -> LatentFace:
    return seeded_model(tiny_config())


@pytest.fixture
def images() -> torch.Tensor:
    """Four random images (B, 3, 64, 64) in [0, 1]."""
    return torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))

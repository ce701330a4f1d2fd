"""Contact sheet of the SynthFaces world: identities by expressions, plus one random view of each."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentface.data.synthfaces.factors import (
    ACTIONS,
    EXPRESSIONS,
    Expression,
    Factors,
    Light,
    Pose,
    SynthConfig,
    expression_actions,
    sample_identities,
    sample_images,
)
from latentface.data.synthfaces.render import render_factors
from latentface.fileio import write_atomic


def _expression_grid(seed: int, split: str, identities: int, config: SynthConfig) -> Factors:
    """Every identity with every expression class at intensity 1, frontal, under one light."""
    classes = len(EXPRESSIONS)
    n = identities * classes
    label = torch.arange(classes).repeat(identities)
    intensity = torch.where(label == 0, 0.0, 1.0)
    zeros = torch.zeros(n)
    return Factors(
        split=split,
        identity_index=torch.arange(identities).repeat_interleave(classes),
        clip=zeros.long(),
        frame=zeros.long(),
        identity=sample_identities(seed, split, range(identities), config).index(
            torch.arange(identities).repeat_interleave(classes)),
        expression=Expression(actions=expression_actions(label, intensity, torch.zeros(n, len(ACTIONS))),
                              label=label, intensity=intensity),
        pose=Pose(yaw=zeros, pitch=zeros, roll=zeros, shift_x=zeros, shift_y=zeros),
        light=Light(ambient=torch.full((n,), 0.55), diffuse=torch.full((n,), 0.45), dir_x=torch.full((n,), 0.3),
                    dir_y=torch.full((n,), -0.3)),
    )


def contact_sheet(seed: int = 0, split: str = "train", identities: int = 8,
                  config: SynthConfig | None = None) -> Tensor:
    """A grid of faces: one row per identity; columns: the expression classes in `EXPRESSIONS` order (frontal,
    intensity 1), then the identity's first random image (`SynthFacesImages` sample 0: random expression, pose
    and light).

    Args:
        seed: world seed.
        split: split of the identities.
        identities: number of rows.
        config: world settings (image size); default `SynthConfig()`.

    Returns:
        (3, identities * S, (len(EXPRESSIONS) + 1) * S) image in [0, 1].
    """
    config = config or SynthConfig()
    grid = render_factors(_expression_grid(seed, split, identities, config), config).image
    random = render_factors(sample_images(seed, split, [(i, 0) for i in range(identities)], config), config).image
    size = config.size
    rows = torch.cat([grid.reshape(identities, len(EXPRESSIONS), 3, size, size), random[:, None]], dim=1)
    return rows.permute(2, 0, 3, 1, 4).reshape(3, identities * size, -1)


def save_contact_sheet(path: str | Path, seed: int = 0, split: str = "train", identities: int = 8,
                       config: SynthConfig | None = None) -> Path:
    """Write `contact_sheet` as a PNG (atomically) and return its path."""
    array = (contact_sheet(seed, split, identities, config).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=True)
    return write_atomic(path, buffer.getvalue())

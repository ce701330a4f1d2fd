"""The model pass of an encoding run: a loaded batch to its feature or code arrays and per-row statuses."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from latentface.extract.items import LoadedBatch
from latentface.model import LatentFace

STAGE1_ARRAYS = ("texture", "shape", "light", "pose")
"""Arrays of the ``codes`` protocol from the Stage-1 encoders."""
RDM_ARRAYS = ("texture_identity", "texture_expression", "shape_identity", "shape_expression")
"""Arrays of the ``codes`` protocol from the RDM (only for weights with Stage 2)."""
NON_FINITE = "non-finite result"
"""Status of a row whose features or codes hold NaN or Inf (written as NaN, never as "ok")."""


def array_widths(model: LatentFace, protocol: str) -> dict[str, int]:
    """Names and widths of the arrays `encode_records` writes for a model and protocol.

    Args:
        model: the weights.
        protocol: the encode protocol.

    Returns:
        ``{name: width}`` in output order.
    """
    if protocol != "codes":
        return {"features": model.num_features(protocol)}
    dim = model.config.latent_dim
    widths = {"texture": dim, "shape": dim, "light": 4, "pose": 6}
    if model.config.has_rdm:
        widths.update(dict.fromkeys(RDM_ARRAYS, dim))
    return widths


@torch.no_grad()
def run_model(model: LatentFace, batch: Tensor, protocol: str, generator: torch.Generator) -> dict[str, np.ndarray]:
    """Features or codes of a batch.

    Args:
        model: the weights.
        batch: (B, 3, S, S) images in [0, 1].
        protocol: the encode protocol.
        generator: the batch's noise generator.

    Returns:
        float32 (B, width) numpy arrays, named as in `array_widths`.
    """
    if protocol != "codes":
        out = {"features": model.features(batch, protocol, generator=generator)}
    else:
        codes = model.encode_batch(batch.to(model.device, model.dtype))
        out = {"texture": codes.texture, "shape": codes.shape, "light": codes.light, "pose": codes.pose}
        if model.config.has_rdm:
            parts = model.disentangle(codes, generator=generator)
            out.update(texture_identity=parts.identity.texture, texture_expression=parts.expression.texture,
                       shape_identity=parts.identity.shape, shape_expression=parts.expression.shape)
    return {name: value.float().cpu().numpy() for name, value in out.items()}


def run_batch(model: LatentFace, loaded: LoadedBatch, protocol: str, flip: bool,
              generator: torch.Generator) -> dict[str, np.ndarray]:
    """Encode one loaded batch to the arrays of its chunk.

    Args:
        model: the weights.
        loaded: the batch's images and statuses.
        protocol: the encode protocol.
        flip: encode the horizontally mirrored images.
        generator: the batch's noise generator.

    Returns:
        ``status`` (str, one per row) and the arrays of `array_widths`: NaN for bad rows and for rows whose
        result holds NaN or Inf (their status then starts with `NON_FINITE`).
    """
    status = list(loaded.status)
    arrays = {name: np.full((len(status), width), np.nan, np.float32)
              for name, width in array_widths(model, protocol).items()}
    good = loaded.good
    if loaded.images is not None:
        batch = torch.flip(loaded.images, dims=[3]) if flip else loaded.images
        for name, values in run_model(model, batch, protocol, generator).items():
            arrays[name][good] = values[good]
        for i in good:  # a NaN or Inf result is never an "ok" row
            bad = [name for name, values in arrays.items() if not np.isfinite(values[i]).all()]
            if bad:
                status[i] = f"{NON_FINITE} (NaN or Inf in {', '.join(bad)})"
                for values in arrays.values():
                    values[i] = np.nan
    return {"status": np.array(status, dtype=str), **arrays}

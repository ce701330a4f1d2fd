"""How invariant per-frame latents are within a clip (after the released code's "Predict vs Origin distance").

Stage 2 trains the identity latents of every frame of a clip towards one target, the clip mean of the raw latents;
`clip_invariance` measures how close each frame's latent stays to its clip's mean and to such a target.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def clip_invariance(latents: Tensor, target: Tensor | None = None) -> dict[str, float]:
    """Invariance of per-frame latents within each clip.

    Args:
        latents: (M, F, D) latents of M clips of F frames.
        target: (M, D) one target per clip (e.g. the clip mean of the raw latents, Stage 2's training target);
            None: the clip mean of `latents` itself.

    Returns:
        ``cosine_to_clip_mean``: mean cosine similarity of a frame's latent to its clip's mean latent;
        ``distance_to_clip_mean``: mean Euclidean distance to it; ``relative_distance``: that over the mean latent
        norm; ``distance_to_target``: mean Euclidean distance to `target`. Computed in float64.

    Raises:
        ValueError: misshaped inputs.
    """
    if latents.ndim != 3 or latents.shape[0] == 0 or latents.shape[1] == 0:
        raise ValueError(f"latents must be non-empty (M, F, D), got {tuple(latents.shape)}")
    if target is not None and target.shape != (latents.shape[0], latents.shape[2]):
        raise ValueError(f"target must be (M, D) = {(latents.shape[0], latents.shape[2])}, got {tuple(target.shape)}")
    latents = latents.double()
    mean = latents.mean(1, keepdim=True)
    target = mean if target is None else target.double()[:, None]
    distance = (latents - mean).norm(dim=-1)
    return {
        "cosine_to_clip_mean": float(F.cosine_similarity(latents, mean.expand_as(latents), dim=-1).mean()),
        "distance_to_clip_mean": float(distance.mean()),
        "relative_distance": float(distance.mean() / latents.norm(dim=-1).mean().clamp(min=1e-12)),
        "distance_to_target": float((latents - target).norm(dim=-1).mean()),
    }

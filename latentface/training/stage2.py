"""LatentFace's Stage-2 objective: the RDMs learn to predict a clip's mean latent from each frame's latent."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from latentface.diffusion import x0_loss
from latentface.errors import WeightsError
from latentface.model import LatentFace
from latentface.outputs import FaceCodes, Latents
from latentface.training.stage1 import reconstruction_losses

FLIP_WEIGHT = 0.5
"""Weight of the flipped branch in the logged reconstruction term (the released Stage-2 code fixes it at 0.5)."""


@dataclass
class Stage2Output:
    """Total loss (texture + shape), its two terms, the logged reconstruction term and the frames' latents with
    their clip-mean targets."""

    loss: Tensor
    albedo: Tensor
    depth: Tensor
    reconstruction: Tensor | None
    latents: Latents
    targets: Latents


def clip_targets(latents: Tensor, gap: int = 0) -> Tensor:
    """Every frame's Stage-2 target: the mean latent of its clip's frames that lie at least `gap` frames from it.

    With ``gap = 0`` every frame's target is its whole clip's mean, as released. Neighbouring frames share a
    frame's expression (a face holds it for a while; SynthFaces blends keyframes 8 frames apart), so the clip mean
    keeps some of each frame's own expression, and a denoiser that predicts it from the frame learns to pass that
    part through; leaving the neighbours out (a deviation) gives a target that knows the frame only through the rest
    of its clip.

    Args:
        latents: (B, T, D) latents of B clips of T frames, in time order.
        gap: frames ``j`` with ``|i - j| < gap`` are left out of frame ``i``'s target; at most ``T // 2`` so
            that every frame keeps one.

    Returns:
        (B, T, D) targets.
    """
    t = latents.shape[1]
    if gap == 0:
        return latents.mean(1, keepdim=True).expand_as(latents)
    if not 0 < gap <= t // 2:
        raise ValueError(f"target gap must lie in [0, {t // 2}] for {t}-frame clips, got {gap}")
    index = torch.arange(t, device=latents.device)
    weights = ((index[:, None] - index[None]).abs() >= gap).to(latents.dtype)
    return torch.einsum("ij,bjd->bid", weights / weights.sum(1, keepdim=True), latents)


class Stage2Objective(nn.Module):
    """SNR-weighted x0-prediction loss of both RDMs, Stage 1 frozen (LatentFace's released Stage-2 code).

    For every frame of a clip, the target x0 is the mean of the clip's latents (time-invariant: identity; see
    `clip_targets` for the option that leaves a frame's neighbours out) and the condition is the frame's own latent;
    t is drawn uniformly in [0, num_train_timesteps) per frame.

    As the released code, every frame is also reconstructed with the light of its clip's first frame and the
    confidence-weighted L1 of both branches (``l1 + 0.5 l1_flip``) is reported as ``reconstruction``: a
    diagnostic of the frozen Stage 1, not part of the loss (the released term also has the perceptual loss, which
    Stage 2 does not load).

    Args:
        model: the LatentFace model; its Stage-1 networks are used without gradients, its RDMs are trained.
        snr_gamma: None for the released SNR(t) weight of each frame's error; a number caps the weight at it
            (Min-SNR weighting, a deviation: see `latentface.diffusion.x0_loss`).
        target_gap: 0 for the released clip-mean target; a positive number leaves out of each frame's target the
            frames nearer to it than that (`clip_targets`, a deviation).
    """

    def __init__(self, model: LatentFace, snr_gamma: float | None = None, target_gap: int = 0) -> None:
        super().__init__()
        if model.albedo_rdm is None or model.depth_rdm is None:
            raise WeightsError("Stage 2 needs a model with RDMs (config rdm_width is None)")
        self.model = model
        self.snr_gamma = snr_gamma
        self.target_gap = target_gap

    def forward(self, clips: Tensor | Latents, generator: torch.Generator | None = None, *,
                reconstruction: bool = True) -> Stage2Output:
        """Loss of a batch of clips on the model's device; `generator` draws t and the noise.

        Args:
            clips: (B, T, 3, S, S) frames in [0, 1], or their latents already encoded by the frozen Stage 1
                (`Latents` of (B, T, D) tensors, ``data.cache_latents``).
            generator: random source of t and the noise.
            reconstruction: also compute the logged reconstruction term (about 15 times the cost of the loss on a
                CPU; the trainer asks for it on logging steps only). None in the output when False or when the
                clips come as latents (the term needs the frames).
        """
        if isinstance(clips, Latents):
            if clips.texture.ndim != 3 or clips.texture.shape != clips.shape.shape:
                raise ValueError(f"clip latents must be (B, T, D), got {tuple(clips.texture.shape)} and "
                                 f"{tuple(clips.shape.shape)}")
            b, t = clips.texture.shape[:2]
            codes = None
            latents = Latents(texture=clips.texture.flatten(0, 1), shape=clips.shape.flatten(0, 1))
        else:
            if clips.ndim != 5:
                raise ValueError(f"clips must be (B, T, 3, S, S), got {tuple(clips.shape)}")
            b, t = clips.shape[:2]
            with torch.no_grad():
                codes = self.model.encode_batch(clips.flatten(0, 1))
            latents = Latents(texture=codes.texture, shape=codes.shape)
        targets = Latents(**{
            name: clip_targets(getattr(latents, name).view(b, t, -1), self.target_gap).reshape(b * t, -1)
            for name in ("texture", "shape")
        })
        losses = {}
        for name, rdm in (("texture", self.model.albedo_rdm), ("shape", self.model.depth_rdm)):
            cond = getattr(latents, name)
            losses[name] = x0_loss(lambda x_t, steps, cond=cond, rdm=rdm: rdm(x_t, cond, steps),
                                   getattr(targets, name), self.model.schedule, generator, self.snr_gamma)
        logged = None
        if reconstruction and codes is not None:
            logged = self._first_light_reconstruction(clips, codes)
        return Stage2Output(loss=losses["texture"] + losses["shape"], albedo=losses["texture"], depth=losses["shape"],
                            reconstruction=logged, latents=latents, targets=targets)

    @torch.no_grad()
    def _first_light_reconstruction(self, clips: Tensor, codes: FaceCodes) -> Tensor:
        b, t = clips.shape[:2]
        light = codes.light.view(b, t, -1)[:, :1].expand(b, t, -1).reshape(b * t, -1)
        rec = reconstruction_losses(self.model, clips.flatten(0, 1), replace(codes, light=light), None)
        return rec.l1 + FLIP_WEIGHT * rec.l1_flip

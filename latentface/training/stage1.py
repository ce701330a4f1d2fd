"""Unsup3D's Stage-1 objective as a module whose forward returns the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latentface.model import LatentFace
from latentface.outputs import FaceCodes, Rendering
from latentface.training.losses import PerceptualLoss, photometric_loss


@dataclass
class Stage1Output:
    """Total loss, its terms (scalars) and the rendering of both branches (batch 2B)."""

    loss: Tensor
    l1: Tensor
    l1_flip: Tensor
    perceptual: Tensor
    perceptual_flip: Tensor
    depth_smoothness: Tensor
    codes: FaceCodes
    rendering: Rendering


@dataclass
class ReconstructionLosses:
    """The photometric and perceptual terms of both branches, and the rendering they score (batch 2B)."""

    l1: Tensor
    l1_flip: Tensor
    perceptual: Tensor
    perceptual_flip: Tensor
    rendering: Rendering


def reconstruction_losses(model: LatentFace, images: Tensor, codes: FaceCodes, perceptual: PerceptualLoss | None,
                          sigma_max: float | None = None) -> ReconstructionLosses:
    """Render `codes` in the input view with and without the flip and score both branches against `images`.

    The reconstructions are set to mid-grey outside the mask valid in both branches (that mask carries no
    gradient); the terms are confidence-weighted by the model's confidence network, as Unsup3D.

    Args:
        model: the model whose renderer and confidence network are used.
        images: (B, 3, S, S) targets in [0, 1].
        codes: the factors to render (usually ``model.encode_batch(images)``).
        perceptual: the perceptual loss, or None to skip it (its terms are then zero).
        sigma_max: cap on both confidence maps (None: unbounded, as Unsup3D).
    """
    b = len(images)
    rendering = model.render(codes, view="input", flip=True)
    mask = rendering.mask[:, None].to(images.dtype)
    recon = (rendering.image - 0.5) * mask + 0.5
    sigma_pixel, sigma_perceptual = model.confidence_net(images * 2 - 1)
    if sigma_max is not None:
        sigma_pixel, sigma_perceptual = sigma_pixel.clamp(max=sigma_max), sigma_perceptual.clamp(max=sigma_max)
    l1 = photometric_loss(recon[:b], images, mask[:b], sigma_pixel[:, :1])
    l1_flip = photometric_loss(recon[b:], images, mask[b:], sigma_pixel[:, 1:])
    if perceptual is None:
        perc = perc_flip = torch.zeros((), device=images.device)
    else:  # the target's features once for both branches (the images carry no gradient)
        f_recon, f_target = perceptual.embed(recon), perceptual.embed(images).detach()
        perc = perceptual.compare(f_recon[:b], f_target, mask[:b], sigma_perceptual[:, :1])
        perc_flip = perceptual.compare(f_recon[b:], f_target, mask[b:], sigma_perceptual[:, 1:])
    return ReconstructionLosses(l1=l1, l1_flip=l1_flip, perceptual=perc, perceptual_flip=perc_flip,
                                rendering=rendering)


class Stage1Objective(nn.Module):
    """Reconstruct the input through the 3D factors, in the input view, with and without the flip.

    ``loss = L1 + lam_flip L1_flip + lam_perc (perc + lam_flip perc_flip) + lam_depth_sm smoothness``
    (Unsup3D, Wu et al., CVPR 2020). The smoothness term is Unsup3D's optional one (0 for its faces, used for its
    synthetic cars): the mean absolute difference of neighbouring canonical depths over ``max - min``, here over
    the columns inside the clamped border (Unsup3D takes it before the clamp; inside they are equal). As in
    Unsup3D, the reconstructions are zeroed (mid-grey, 0.5 in [0, 1] units) outside the mask valid in both
    branches before the losses, and that mask carries no gradient.

    Args:
        model: the LatentFace model whose Stage-1 networks are trained.
        perceptual: the perceptual loss (with its frozen feature network); None only with ``lam_perc=0`` (then the
            perceptual terms are zero and no feature network runs).
        lam_flip: weight of the flipped branch.
        lam_perc: weight of the perceptual terms.
        lam_depth_sm: weight of the depth smoothness term.
        sigma_max: cap on the confidence maps (None: unbounded, as Unsup3D; see `reconstruction_losses`).
    """

    def __init__(self, model: LatentFace, perceptual: PerceptualLoss | None, lam_flip: float = 0.5,
                 lam_perc: float = 1.0, lam_depth_sm: float = 0.0, sigma_max: float | None = None) -> None:
        super().__init__()
        if perceptual is None and lam_perc != 0:
            raise ValueError("a perceptual loss is needed unless lam_perc is 0")
        self.model = model
        self.perceptual = perceptual
        self.lam_flip = lam_flip
        self.lam_perc = lam_perc
        self.lam_depth_sm = lam_depth_sm
        self.sigma_max = sigma_max

    def forward(self, images: Tensor, lam_flip: float | None = None) -> Stage1Output:
        """Loss of a (B, 3, S, S) batch in [0, 1] on the model's device; `lam_flip` overrides the default."""
        lam_flip = self.lam_flip if lam_flip is None else lam_flip
        codes = self.model.encode_batch(images)
        rec = reconstruction_losses(self.model, images, codes, self.perceptual, self.sigma_max)
        smooth = self._depth_smoothness(rec.rendering.canonical_depth[: len(images)])
        loss = (rec.l1 + lam_flip * rec.l1_flip + self.lam_perc * (rec.perceptual + lam_flip * rec.perceptual_flip)
                + self.lam_depth_sm * smooth)
        return Stage1Output(loss=loss, l1=rec.l1, l1_flip=rec.l1_flip, perceptual=rec.perceptual,
                            perceptual_flip=rec.perceptual_flip, depth_smoothness=smooth, codes=codes,
                            rendering=rec.rendering)

    def _depth_smoothness(self, depth: Tensor) -> Tensor:
        cfg = self.model.config
        if cfg.border_columns:
            depth = depth[:, :, cfg.border_columns:-cfg.border_columns]
        scale = cfg.max_depth - cfg.min_depth
        return ((depth[:, 1:] - depth[:, :-1]).abs().mean() + (depth[:, :, 1:] - depth[:, :, :-1]).abs().mean()) / scale

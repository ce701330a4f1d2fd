"""SynthFaces images: canonical maps from the factors, then the project's image formation in the input view."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.config import LatentFaceConfig
from latentface.data.synthfaces.factors import (
    Factors,
    SynthConfig,
    sample_clip,
    sample_images,
    split_code,
)
from latentface.data.synthfaces.maps import backdrop, canonical_face
from latentface.render import form_image, light_code, pose_code

FACE_MASK_THRESHOLD = 0.5
"""A pixel belongs to the face where the head coverage seen there exceeds this."""


@dataclass
class SynthBatch:
    """B rendered SynthFaces images with their ground truth (all on the CPU, float32 unless noted).

    Attributes:
        image: (B, 3, S, S) RGB in [0, 1]: the rendered head, neck and hair composited (by their coverage seen
            in this view) over a screen-space backdrop, the identity's background under the ambient and frontal
            diffuse light. The backdrop does not turn with the head, as the background of a photo would not.
        depth: (B, S, S) depth rendered in the input view (`latentface.render.form_image`): the posed canonical
            surface, i.e. the face and the background plane that turns with it.
        normal: (B, 3, S, S) normals of that depth.
        mask: (B, S, S) bool, where the posed surface covers the pixel.
        face_mask: (B, S, S) bool, where the head (not the neck or background) is seen, within ``mask``.
        canonical_depth: (B, S, S) canonical (frontal) depth.
        canonical_normal: (B, 3, S, S) its normals.
        canonical_face_mask: (B, S, S) bool, the head in the canonical view.
        albedo: (B, 3, S, S) canonical albedo in [0, 1].
        light_code, pose_code: (B, 4) and (B, 6) codes given to the image formation.
        factors: every factor value.
    """

    image: Tensor
    depth: Tensor
    normal: Tensor
    mask: Tensor
    face_mask: Tensor
    canonical_depth: Tensor
    canonical_normal: Tensor
    canonical_face_mask: Tensor
    albedo: Tensor
    light_code: Tensor
    pose_code: Tensor
    factors: Factors

    def __len__(self) -> int:
        return len(self.image)

    def as_dict(self) -> dict[str, Tensor]:
        """The batch as a flat dict of tensors with a leading batch dimension, keys `ITEM_KEYS`."""
        f = self.factors
        return {
            "image": self.image,
            "depth": self.depth,
            "normal": self.normal,
            "mask": self.mask,
            "face_mask": self.face_mask,
            "canonical_depth": self.canonical_depth,
            "canonical_normal": self.canonical_normal,
            "canonical_face_mask": self.canonical_face_mask,
            "albedo": self.albedo,
            "split": torch.full((len(self),), split_code(f.split)),
            "identity": f.identity_index,
            "clip": f.clip,
            "frame": f.frame,
            "identity_params": f.identity.params,
            "expression": f.expression.label,
            "intensity": f.expression.intensity,
            "actions": f.expression.actions,
            "pose": f.pose.stacked(),
            "light": f.light.stacked(),
            "pose_code": self.pose_code,
            "light_code": self.light_code,
        }

    def items(self) -> list[dict[str, Tensor]]:
        """One dict per image (views into the batch tensors)."""
        batch = self.as_dict()
        return [{key: value[i] for key, value in batch.items()} for i in range(len(self))]


ITEM_KEYS = ("image", "depth", "normal", "mask", "face_mask", "canonical_depth", "canonical_normal",
             "canonical_face_mask", "albedo", "split", "identity", "clip", "frame", "identity_params", "expression",
             "intensity", "actions", "pose", "light", "pose_code", "light_code")
"""Keys of the item dicts: the maps of `SynthBatch`, then the factors: ``split`` (index into `SPLITS`),
``identity`` (index within the split), ``clip``, ``frame``, ``identity_params`` (columns `IDENTITY_PARAMS`),
``expression`` (class index into `EXPRESSIONS`), ``intensity``, ``actions`` (columns `ACTIONS`), ``pose`` (yaw,
pitch, roll in degrees, shift_x, shift_y), ``light`` (ambient, diffuse, dir_x, dir_y), ``pose_code`` and
``light_code`` (the codes the image was formed with)."""


def model_config(size: int) -> LatentFaceConfig:
    """The image-formation constants SynthFaces renders with (the model's defaults at `size`)."""
    return LatentFaceConfig(image_size=size)


@torch.no_grad()
def render_factors(factors: Factors, config: SynthConfig) -> SynthBatch:
    """Draw and render faces with given factors.

    Args:
        factors: factors of B faces (`sample_images`, `sample_clip`, or built by hand).
        config: world settings (image size).

    Returns:
        `SynthBatch` of the B faces.
    """
    size = config.size
    model = model_config(size)
    face = canonical_face(factors.identity, factors.expression.actions, size, model.resolved_border_depth)
    pose, light = factors.pose, factors.light
    view = pose_code(model, yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll, shift_x=pose.shift_x, shift_y=pose.shift_y)
    direction = torch.stack([light.dir_x, light.dir_y, torch.ones_like(light.dir_x)], dim=1)
    lighting = light_code(model, ambient=light.ambient, diffuse=light.diffuse, direction=direction)
    out = form_image(face.albedo, face.depth, lighting, view, model)
    seen = F.grid_sample(torch.stack([face.face_mask, face.foreground], dim=1), out.grid, mode="bilinear",
                         padding_mode="zeros", align_corners=True) * out.mask[:, None]
    face_mask = seen[:, 0] > FACE_MASK_THRESHOLD
    flat = light.ambient + light.diffuse * direction[:, 2] / direction.norm(dim=1)
    behind = backdrop(factors.identity, size) * flat[:, None, None, None]
    image = (behind + seen[:, 1:] * (out.image - behind)).clamp(0, 1)
    return SynthBatch(
        image=image,
        depth=out.depth,
        normal=out.normal,
        mask=out.mask,
        face_mask=face_mask,
        canonical_depth=out.canonical_depth,
        canonical_normal=out.canonical_normal,
        canonical_face_mask=face.face_mask > FACE_MASK_THRESHOLD,
        albedo=out.albedo,
        light_code=lighting,
        pose_code=view,
        factors=factors,
    )


def generate(
    seed: int = 0,
    split: str = "train",
    items: list[tuple[int, int]] | None = None,
    config: SynthConfig | None = None,
) -> SynthBatch:
    """Render independent SynthFaces images in one batch.

    Args:
        seed: world seed.
        split: one of `SPLITS`.
        items: (identity, sample) pairs; default ``[(0, 0)]``.
        config: world settings; default `SynthConfig()`.

    Returns:
        `SynthBatch`; item n equals what any other batch containing ``items[n]`` gives for it.
    """
    config = config or SynthConfig()
    return render_factors(sample_images(seed, split, items or [(0, 0)], config), config)


def generate_clip(
    seed: int = 0,
    split: str = "train",
    identity: int = 0,
    clip: int = 0,
    frames: int = 16,
    config: SynthConfig | None = None,
) -> SynthBatch:
    """Render the first `frames` frames of one video clip (one identity, smooth expression and pose).

    Args:
        seed: world seed.
        split: one of `SPLITS`.
        identity: identity index within the split.
        clip: clip index of that identity.
        frames: number of frames (from frame 0).
        config: world settings; default `SynthConfig()`.

    Returns:
        `SynthBatch` of the frames in order.
    """
    config = config or SynthConfig()
    return render_factors(sample_clip(seed, split, identity, clip, range(frames), config), config)

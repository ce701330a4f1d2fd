"""`LatentFaceConfig`: every constant of a LatentFace model, saved with its weights as `config.json`."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from latentface.options import RESAMPLES, RESIZE_MODES, SAMPLERS, Resample, ResizeMode, Sampler, check_option


@dataclass
class PreprocessConfig:
    """How raw images become network input; saved with the weights so every user feeds the same pixels.

    The target size is the model's `LatentFaceConfig.image_size`.

    Args:
        resample: interpolation used to resize (``"bilinear"`` or ``"bicubic"``), antialiased when shrinking.
        resize_mode: ``"stretch"`` resizes any aspect ratio straight to the square (the released protocols);
            ``"center_crop"`` first takes the largest centred square.
    """

    resample: Resample = "bilinear"
    resize_mode: ResizeMode = "stretch"


@dataclass
class LatentFaceConfig:
    """Architecture, image-formation and sampling constants (defaults: the released CelebA/VoxCeleb model).

    Args:
        image_size: network input size; 64 * 2**k, larger sizes add ``repeat = k`` stride-2 blocks (weights of
            the repeated block shared, as in the official networks).
        ae_width: base width ``nf`` of the texture, shape and confidence encoder-decoders (a multiple of 16).
        light_pose_width: base width of the light and pose encoders.
        latent_dim: texture/shape bottleneck size (``zdim``).
        confidence_latent_dim: bottleneck size of the confidence net.
        min_depth, max_depth: canonical depth range after rescaling.
        border_depth: depth written into the ``border_columns`` leftmost and rightmost columns;
            ``None`` means ``0.7 * max_depth + 0.3 * min_depth``.
        border_columns: how many columns on each side are clamped to ``border_depth``.
        fov: camera field of view in degrees.
        xyz_rotation_range: degrees per unit of the pose rotations.
        xy_translation_range, z_translation_range: translation per unit of the pose translations.
        rotation_center_depth: rotations happen about the point (0, 0, rotation_center_depth).
        min_ambient, max_ambient, min_diffuse, max_diffuse: light strength ranges.
        rdm_width: block width of the RDM denoisers (128 released, 1024 first release); ``None`` for a
            Stage-1-only model.
        rdm_layers_per_block: residual blocks per down block (the up block has one more).
        rdm_norm_groups: GroupNorm groups inside the RDM (at least two channels per group: on the 1x1 input a
            one-channel group normalises to zero).
        num_train_timesteps, beta_start, beta_end: linear noise schedule of the RDM.
        sampler: ``"official"`` (released behaviour, diffusers 0.14.0 DDIM step) or ``"ddim"`` (textbook).
        sampling_steps: DDIM steps (5: timesteps 800, 600, 400, 200, 0).
        clip_sample: clamp range of the predicted x0 in both samplers; ``None`` disables clamping.
        preprocess: input preprocessing spec.
    """

    image_size: int = 64
    ae_width: int = 64
    light_pose_width: int = 32
    latent_dim: int = 256
    confidence_latent_dim: int = 128
    min_depth: float = 0.9
    max_depth: float = 1.1
    border_depth: float | None = None
    border_columns: int = 2
    fov: float = 10.0
    xyz_rotation_range: float = 60.0
    xy_translation_range: float = 0.1
    z_translation_range: float = 0.0
    rotation_center_depth: float = 1.0
    min_ambient: float = 0.0
    max_ambient: float = 1.0
    min_diffuse: float = 0.0
    max_diffuse: float = 1.0
    rdm_width: int | None = 128
    rdm_layers_per_block: int = 2
    rdm_norm_groups: int = 32
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler: Sampler = "official"
    sampling_steps: int = 5
    clip_sample: float | None = 1.0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig(**self.preprocess)
        self.validate()

    @property
    def repeat(self) -> int:
        """Extra stride-2 blocks per encoder/decoder for sizes above 64 (official scheme)."""
        return int(math.log2(self.image_size // 64))

    @property
    def resolved_border_depth(self) -> float:
        """The border depth, derived from the depth range when not set explicitly."""
        if self.border_depth is not None:
            return self.border_depth
        return 0.7 * self.max_depth + 0.3 * self.min_depth

    @property
    def has_rdm(self) -> bool:
        """Whether the model carries the Stage-2 denoisers."""
        return self.rdm_width is not None

    def validate(self) -> None:
        """Raise `ValueError` naming the first inconsistent value."""
        size = self.image_size
        if size < 64 or size & (size - 1):
            raise ValueError(f"image_size must be 64 * 2**k, got {size}")
        if self.ae_width <= 0 or self.ae_width % 16:
            raise ValueError(f"ae_width must be a positive multiple of 16 (GroupNorm groups), got {self.ae_width}")
        if self.light_pose_width <= 0:
            raise ValueError(f"light_pose_width must be positive, got {self.light_pose_width}")
        if not self.min_depth < self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) must be below max_depth ({self.max_depth})")
        if self.rdm_width is not None and (self.rdm_width <= 0 or self.rdm_width % (2 * self.rdm_norm_groups)):
            # On a 1x1 input, a group of one channel is normalised to zero: the block would ignore its input.
            raise ValueError(
                f"rdm_width must be a positive multiple of 2 * rdm_norm_groups={2 * self.rdm_norm_groups} (at least "
                f"two channels per GroupNorm group), got {self.rdm_width}"
            )
        check_option("sampler", self.sampler, SAMPLERS)
        if not 1 <= self.sampling_steps <= self.num_train_timesteps:
            raise ValueError(f"sampling_steps must be in [1, {self.num_train_timesteps}], got {self.sampling_steps}")
        check_option("preprocess.resize_mode", self.preprocess.resize_mode, RESIZE_MODES)
        check_option("preprocess.resample", self.preprocess.resample, RESAMPLES)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentFaceConfig:
        """Build a config from `to_dict` output, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LatentFaceConfig keys: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LatentFaceConfig:
        """Parse `to_json` output."""
        return cls.from_dict(json.loads(text))

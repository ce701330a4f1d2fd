"""`LatentFaceConfig`: every constant of a LatentFace model, saved with its weights as `config.json`."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

from latentface.options import RESAMPLES, RESIZE_MODES, SAMPLERS, Resample, ResizeMode, Sampler, check_option

_POSITIVE_INTS = ("ae_width", "light_pose_width", "latent_dim", "confidence_latent_dim",
                  "rdm_layers_per_block", "rdm_norm_groups", "num_train_timesteps")


def _refuse(key: str, value: object, accepted: str) -> NoReturn:
    raise ValueError(f"config key {key!r} must be {accepted}, got {value!r}")


def _integer(key: str, value: object, low: int, high: int | None) -> int:
    """`value` as an integer in ``[low, high]`` (no upper bound when None), or a `ValueError` naming `key`."""
    accepted = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        _refuse(key, value, accepted)
    return value


def _number(key: str, value: object, *, above: float | None = None, at_least: float | None = None,
            below: float | None = None, what: str | None = None) -> float:
    """`value` as a finite number within the bounds given, or a `ValueError` naming `key` and the range."""
    if what is None:
        bounds = [f"> {above}" if above is not None else "", f">= {at_least}" if at_least is not None else "",
                  f"< {below}" if below is not None else ""]
        what = " and ".join(b for b in bounds if b)
    accepted = f"a finite number {what}".rstrip()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _refuse(key, value, accepted)
    number = float(value)  # type: ignore[arg-type]
    if ((above is not None and not number > above) or (at_least is not None and not number >= at_least)
            or (below is not None and not number < below)):
        _refuse(key, value, accepted)
    return number


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
            unknown = sorted(set(self.preprocess) - {f.name for f in dataclasses.fields(PreprocessConfig)})
            if unknown:
                raise ValueError(f"unknown preprocess keys: {', '.join(map(str, unknown))} (known: resample, "
                                 "resize_mode)")
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
        """Check every field: its type and its accepted range or ordering.

        Raises:
            ValueError: naming the first bad key, the accepted values and the value found.
        """
        for key in _POSITIVE_INTS:
            _integer(key, getattr(self, key), 1, None)
        size = _integer("image_size", self.image_size, 64, None)
        if size & (size - 1):
            _refuse("image_size", size, "64 * 2**k (64, 128, 256, ...)")
        if self.ae_width % 16:
            _refuse("ae_width", self.ae_width, "a positive multiple of 16 (GroupNorm groups of four channels)")
        _integer("border_columns", self.border_columns, 0, size // 2 - 1)
        _number("min_depth", self.min_depth, above=0)
        _number("max_depth", self.max_depth, above=self.min_depth, what=f"above min_depth = {self.min_depth}")
        if self.border_depth is not None:
            _number("border_depth", self.border_depth, above=0, what="> 0, or null for the default")
        _number("fov", self.fov, above=0, below=180, what="in (0, 180) degrees")
        for key in ("xyz_rotation_range", "xy_translation_range", "z_translation_range"):
            _number(key, getattr(self, key), at_least=0)
        _number("rotation_center_depth", self.rotation_center_depth)
        for light in ("ambient", "diffuse"):
            low = _number(f"min_{light}", getattr(self, f"min_{light}"), at_least=0)
            _number(f"max_{light}", getattr(self, f"max_{light}"), at_least=low, what=f"at least min_{light} = {low}")
        if self.rdm_width is not None:
            _integer("rdm_width", self.rdm_width, 1, None)
            if self.rdm_width % (2 * self.rdm_norm_groups):
                # On a 1x1 input, a group of one channel is normalised to zero: the block would ignore its input.
                _refuse("rdm_width", self.rdm_width, f"a positive multiple of 2 * rdm_norm_groups = "
                        f"{2 * self.rdm_norm_groups} (at least two channels per GroupNorm group), or null")
        start = _number("beta_start", self.beta_start, above=0, below=1, what="in (0, 1)")
        _number("beta_end", self.beta_end, above=start, below=1, what=f"in (beta_start = {start}, 1)")
        check_option("sampler", self.sampler, SAMPLERS)
        _integer("sampling_steps", self.sampling_steps, 1, self.num_train_timesteps)
        if self.clip_sample is not None:
            _number("clip_sample", self.clip_sample, above=0, what="> 0, or null for no clamping")
        if not isinstance(self.preprocess, PreprocessConfig):
            _refuse("preprocess", self.preprocess, "an object with the keys resample and resize_mode")
        check_option("preprocess.resize_mode", self.preprocess.resize_mode, RESIZE_MODES)
        check_option("preprocess.resample", self.preprocess.resample, RESAMPLES)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentFaceConfig:
        """Build a config from `to_dict` output, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ValueError(f"a LatentFaceConfig is a JSON object of keys and values, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
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

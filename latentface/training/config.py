"""Training configuration: nested dataclasses read from TOML, overridden by ``section.key=value`` strings.

Defaults are the paper's recipe (Unsup3D's and LatentFace's released code): Stage 1 as Unsup3D on CelebA (Adam
1e-4, weight decay 5e-4, batch 64, 30 epochs, lam_flip 0.5, lam_perc 1), Stage 2 as LatentFace on VoxCeleb (one
16-frame clip per step, gradient-norm clip 1.0). The resolved configuration is saved with every run as ``config.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from latentface.data.synthfaces.factors import CLIP_LIGHTS

PERCEPTUAL_NETS = ("vgg16", "onet")
DATA_KINDS = ("synthfaces", "synthfaces_folder", "image_folder", "celeba", "clip_folder", "voxceleb")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "cosine")
TEXTURE_ENCODER_INITS = ("init", "shape")


@dataclass
class DataConfig:
    """Where training images come from.

    Args:
        kind: one of `DATA_KINDS`; Stage 1 reads images (a clip dataset yields its frames), Stage 2 clips.
        root: dataset folder (not used by ``synthfaces``, which renders on the fly).
        split: split to read where the layout has splits (CelebA, SynthFaces).
        clip_length: frames per clip (Stage 2).
        identities: SynthFaces identities (on-the-fly rendering).
        samples_per_identity: SynthFaces images per identity (Stage 1) or clips per identity (Stage 2).
        seed: SynthFaces world seed.
        crop_list: CelebA bounding-box list for raw ``img_celeba`` images (Unsup3D's crop).
        recrop: VoxCeleb frame-name filter, as the official code's (``"recrop"`` keeps ``*recrop*`` files only).
        on_error: ``"skip"`` unreadable files (reported and counted) or ``"raise"``.
        num_workers: DataLoader worker processes.
        cache_latents: Stage 2 only: encode every clip (and its mirror image) once with the frozen Stage 1, keep
            the latents in the run folder (``latents.pt``) and train the RDMs on them: the same losses as encoding
            every step, many times faster. Not the released loop: readers that draw new frames every epoch keep
            the first epoch's, and the logged first-frame-light reconstruction is not computed (it needs frames).
        cache_images: Stage 1 only: render (SynthFaces) or decode every training image once, keep them as 8-bit
            RGB in the run folder (``images.pt``) and train on those: the same images up to 8-bit rounding,
            without rendering or decoding at every step. Readers that draw new frames every epoch keep the first
            epoch's.
        clip_light: Stage 2 on ``synthfaces`` only: ``"clip"`` (one light per clip, as in a real video) or
            ``"frame"`` (a new light for every frame, so the clip mean the RDMs learn to predict holds no light:
            a data deviation, `latentface.data.synthfaces.SynthConfig.clip_light`).
    """

    kind: str = "synthfaces"
    root: str | None = None
    split: str = "train"
    clip_length: int = 16
    identities: int = 1000
    samples_per_identity: int = 8
    seed: int = 0
    crop_list: str | None = None
    recrop: str | None = None
    on_error: str = "skip"
    num_workers: int = 0
    cache_latents: bool = False
    cache_images: bool = False
    clip_light: str = "clip"


@dataclass
class OptimConfig:
    """Optimisation.

    Args:
        lr, betas, weight_decay: Adam (PyTorch's L2-style weight decay, as the released code).
        batch_size: images (Stage 1) or clips (Stage 2) per process and step, before accumulation.
        grad_accum: gradient accumulation steps per optimizer step.
        grad_clip: clip the global gradient norm to this value; None to disable (Stage 1 default).
        epochs: passes over the data.
        max_steps: stop after this many optimizer steps (overrides `epochs` when reached first).
        lr_schedule: ``"constant"`` (as released) or ``"cosine"``: the learning rate follows half a cosine from `lr`
            at the first step to 0 after the run's last (``max_steps``, or ``epochs`` when that is reached first).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    batch_size: int = 64
    grad_accum: int = 1
    grad_clip: float | None = None
    epochs: int = 30
    max_steps: int | None = None
    lr_schedule: str = "constant"


@dataclass
class LossConfig:
    """Loss settings: Stage 1's weights and perceptual network, Stage 2's timestep weighting.

    Args:
        lam_flip: weight of the flipped branch (1.0 before `lam_flip_start_epoch`).
        lam_flip_start_epoch: first epoch that uses `lam_flip`.
        lam_perc: weight of the perceptual terms; 0 turns them off and needs no VGG16 (a deviation for quick CPU
            runs, not the paper's recipe).
        lam_depth_sm: weight of Unsup3D's optional depth smoothness term (0 for faces, as released).
        sigma_max: Stage 1: None leaves the confidence maps unbounded, as released; a number caps both maps (pixel
            and perceptual) at it before they weight the terms (a deviation), so the confidence network cannot
            give up on the regions it finds hard (eyes and mouth, where the expression is) by declaring them
            uncertain.
        perceptual_net: ``"vgg16"`` (relu3_3, as released) or ``"onet"`` (MTCNN's O-Net up to prelu3, a face
            network whose weights ship with facenet-pytorch, the ``face`` extra: no download; a deviation).
        perceptual_weights: VGG16 only: ``"imagenet"`` (timm ``vgg16.tv_in1k`` from the Hub), a local VGG16 state
            dict, or ``"random"`` (tests only).
        rdm_snr_gamma: Stage 2: ``"none"`` (None) weights each frame's x0 error by SNR(t), as released; a number
            caps that weight (Min-SNR weighting, a deviation), so the nearly clean timesteps, where predicting x0
            is trivial, stop dominating the loss.
        rdm_target_gap: Stage 2: 0 makes every frame's target the mean latent of its whole clip, as released; a
            positive number leaves out of frame ``i``'s target the frames ``j`` with ``|i - j| < rdm_target_gap``
            (a deviation), so a frame's own expression, which its neighbours share, stays out of the identity it
            learns to predict. Every frame must keep at least one frame in its target: at most ``clip_length // 2``.
    """

    lam_flip: float = 0.5
    lam_flip_start_epoch: int = 0
    lam_perc: float = 1.0
    lam_depth_sm: float = 0.0
    sigma_max: float | None = None
    perceptual_net: str = "vgg16"
    perceptual_weights: str = "imagenet"
    rdm_snr_gamma: float | None = None
    rdm_target_gap: int = 0


@dataclass
class TrainConfig:
    """A training run.

    Args:
        stage: 1 (autoencoder) or 2 (RDM, Stage 1 frozen).
        output_dir: run folder (checkpoints, logs, images, the final weights in ``final/``).
        init: weights to start from (name, folder or Hub id); required for Stage 2 (the Stage-1 weights).
        init_texture_encoder: with ``init`` in Stage 1, where the texture encoder starts: ``"init"`` (the init
            weights' own) or ``"shape"`` (a copy of the init weights' shape encoder, whose features keep the
            expression; the texture decoder and every other network keep the init weights').
        model: `LatentFaceConfig` fields for a new model (Stage 1), e.g. ``{"ae_width": 32}``; with ``init`` in
            Stage 1, fields that keep every tensor's shape (image formation, e.g. ``min_depth``, ``max_depth``)
            applied to the init weights' config; for Stage 2 the RDM fields (``rdm_width``, ``clip_sample`` ...)
            applied to the init weights' config. TOML has no null:
            the string ``"none"`` stands for None (e.g. ``clip_sample = "none"``).
        data, optim, loss: see `DataConfig`, `OptimConfig`, `LossConfig`.
        seed: seed of initialisation, data order, flips and diffusion noise.
        flip_prob: probability of the random horizontal flip of a training image (Stage 2: of a whole clip).
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (Accelerate's autocast).
        log_every: steps between log rows (CSV, TensorBoard when installed, progress bar).
        image_every: steps between PNG grids of input / albedo / depth / shading / reconstruction (0: never).
        checkpoint_every: steps between full-state checkpoints (0: only at the end).
        keep_checkpoints: how many recent checkpoints to keep.
    """

    stage: int = 1
    output_dir: str = "runs/latentface"
    init: str | None = None
    init_texture_encoder: str = "init"
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    seed: int = 0
    flip_prob: float = 0.5
    mixed_precision: str = "no"
    log_every: int = 10
    image_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2

    def validate(self) -> None:
        """Raise ValueError on inconsistent values."""
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.stage == 2 and not self.init:
            raise ValueError("stage 2 needs init= the Stage-1 weights (a folder, name or Hub id)")
        if self.init_texture_encoder not in TEXTURE_ENCODER_INITS:
            raise ValueError(f"init_texture_encoder must be one of {TEXTURE_ENCODER_INITS}, "
                             f"got {self.init_texture_encoder!r}")
        if self.init_texture_encoder != "init" and (self.stage != 1 or not self.init):
            raise ValueError("init_texture_encoder applies to stage 1 with init= (it copies the init's shape encoder)")
        if self.data.kind not in DATA_KINDS:
            raise ValueError(f"data.kind must be one of {DATA_KINDS}, got {self.data.kind!r}")
        if self.data.kind != "synthfaces" and not self.data.root:
            raise ValueError(f"data.root is required for data.kind={self.data.kind!r}")
        if self.data.cache_latents and self.stage != 2:
            raise ValueError("data.cache_latents applies to stage 2 only (Stage 1 trains the encoders)")
        if self.data.cache_images and self.stage != 1:
            raise ValueError("data.cache_images applies to stage 1 only (stage 2 caches latents: data.cache_latents)")
        if self.data.clip_light not in CLIP_LIGHTS:
            raise ValueError(f"data.clip_light must be one of {CLIP_LIGHTS}, got {self.data.clip_light!r}")
        if self.data.clip_light != "clip" and (self.stage != 2 or self.data.kind != "synthfaces"):
            raise ValueError("data.clip_light applies to stage 2 on data.kind='synthfaces' only")
        if self.data.on_error not in ("skip", "raise"):
            raise ValueError(f"data.on_error must be 'skip' or 'raise', got {self.data.on_error!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        positive = {"optim.batch_size": self.optim.batch_size, "optim.grad_accum": self.optim.grad_accum,
                    "optim.epochs": self.optim.epochs, "data.clip_length": self.data.clip_length,
                    "keep_checkpoints": self.keep_checkpoints, "log_every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must lie in [0, 1], got {self.flip_prob}")
        if self.optim.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"optim.lr_schedule must be one of {LR_SCHEDULES}, got {self.optim.lr_schedule!r}")
        if self.loss.perceptual_net not in PERCEPTUAL_NETS:
            raise ValueError(f"loss.perceptual_net must be one of {PERCEPTUAL_NETS}, got {self.loss.perceptual_net!r}")
        if self.loss.sigma_max is not None and not self.loss.sigma_max > 0:
            raise ValueError(f"loss.sigma_max must be positive or none, got {self.loss.sigma_max}")
        if self.loss.rdm_snr_gamma is not None and not self.loss.rdm_snr_gamma > 0:
            raise ValueError(f"loss.rdm_snr_gamma must be positive or none, got {self.loss.rdm_snr_gamma}")
        if self.loss.rdm_target_gap < 0:
            raise ValueError(f"loss.rdm_target_gap must be 0 or positive, got {self.loss.rdm_target_gap}")
        if self.stage == 2 and self.loss.rdm_target_gap > self.data.clip_length // 2:
            raise ValueError(f"loss.rdm_target_gap {self.loss.rdm_target_gap} leaves some frame of a "
                             f"{self.data.clip_length}-frame clip with an empty target: at most "
                             f"{self.data.clip_length // 2}")

    def model_settings(self) -> dict[str, Any]:
        """The `model` table with ``"none"`` read as None."""
        return {k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in self.model.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists, None values kept)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_toml(self) -> str:
        """TOML text that `load_train_config` reads back to an equal config (None values are left out, but a None model
        setting is written as ``"none"``)."""
        data = self.to_dict()
        data["model"] = {k: "none" if v is None else v for k, v in data["model"].items()}
        return _toml(data)


def _toml(data: dict[str, Any]) -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _convert(value: Any, annotation: Any, name: str) -> Any:
    """Coerce a TOML or command-line value to the field's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in options:
                return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, name)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{name}: cannot read {value!r} as {annotation}: {'; '.join(errors)}")
    if origin is tuple:
        items = json.loads(value) if isinstance(value, str) else value
        args = typing.get_args(annotation)
        if not isinstance(items, (list, tuple)) or len(items) != len(args):
            raise ValueError(f"{name}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, name) for v, a in zip(items, args, strict=True))
    if origin is dict:
        data = json.loads(value) if isinstance(value, str) else value
        if not isinstance(data, dict):
            raise ValueError(f"{name}: expected a table, got {value!r}")
        return dict(data)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if annotation in (int, float):
        kind = "an integer" if annotation is int else "a number"
        try:
            number = annotation(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (annotation is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{name}: expected {kind}, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported field type {annotation}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{name} must be a table")
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _convert(value, hint, prefix + name)
    return cls(**values)


def _apply_override(data: dict[str, Any], override: str) -> None:
    """``section.key=value`` into the nested dict; ``model.*`` values are parsed as JSON when possible."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ValueError(f"override must look like section.key=value, got {override!r}")
    parts = key.strip().split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ValueError(f"{key}: {part} is not a section")
    if parts[0] == "model":
        try:
            target[parts[-1]] = json.loads(value)
        except json.JSONDecodeError:
            target[parts[-1]] = value
    else:
        target[parts[-1]] = value


def load_train_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (defaults when `path` is None), apply ``section.key=value`` overrides, validate.

    Raises:
        ValueError: unknown settings, values of the wrong type, or inconsistent values (the message names them).
    """
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    for override in overrides:
        _apply_override(data, override)
    config = _build(TrainConfig, data, "")
    config.validate()
    return config

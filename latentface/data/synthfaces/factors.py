"""The factors of a SynthFaces image: identity, expression, pose and light, drawn deterministically by seed.

Every random draw comes from its own `torch.Generator`, seeded by a hash of ``(seed, split, kind, identity,
...)``, so an item never depends on the batch it is generated in and the same seed gives the same bytes:

- identity ``i`` of a split: ``(seed, split, "identity", i)``: shape, albedo and hair parameters and the
  identity's noise textures. The split name is part of the key, so train, val and test identities are drawn
  from disjoint streams (``identity`` indices restart at 0 in every split but name different people);
- image sample ``k`` of identity ``i``: ``(seed, split, "image", i, k)``: expression, pose and light;
- video clip ``k`` of identity ``i``: light from ``(seed, split, "clip", i, k)`` (with ``clip_light="frame"``,
  frame ``f``'s from ``(seed, split, "clip", i, k, "light", f)``), and keyframe ``n`` of its
  expression and pose from ``(seed, split, "clip", i, k, "key", n)``; frame ``f`` blends keyframes
  ``f // keyframe_interval`` and the next one with a smoothstep, so clips are smooth in time and frame ``f``
  does not depend on the clip length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from latentface.hashing import hashed_generator

SPLITS = ("train", "val", "test")

# name -> (low, high): value = low + (high - low) * uniform draw. Lengths are in normalised image units
# (x right, y down, both in [-1, 1] across the canonical image), heights in depth units (nearer = larger height).
_CONTINUOUS = {
    "head_center_y": (-0.10, 0.0),
    "head_width": (0.62, 0.72),
    "head_height": (0.86, 0.96),
    "jaw_taper": (0.2, 0.42),
    "head_relief": (0.06, 0.075),
    "neck_width": (0.3, 0.4),
    "ear_size": (0.85, 1.15),
    "forehead": (0.0, 0.008),
    "brow_ridge": (0.003, 0.008),
    "cheekbones": (0.003, 0.01),
    "cheek_x": (0.32, 0.4),
    "chin": (0.003, 0.008),
    "eye_y": (-0.2, -0.12),
    "eye_x": (0.26, 0.32),
    "eye_size": (0.1, 0.125),
    "eye_open": (0.38, 0.5),
    "eye_depth": (0.006, 0.012),
    "nose_length": (0.28, 0.36),
    "nose_width": (0.08, 0.12),
    "nose_height": (0.014, 0.022),
    "nose_bridge": (0.3, 0.7),
    "mouth_gap": (0.17, 0.23),
    "mouth_width": (0.17, 0.23),
    "lip_thickness": (0.035, 0.06),
    "lip_fullness": (0.003, 0.007),
    "brow_gap": (0.13, 0.17),
    "brow_length": (0.14, 0.18),
    "brow_thickness": (0.03, 0.05),
    "brow_arch": (0.0, 0.06),
    "skin_tone": (0.0, 1.0),
    "skin_redness": (-0.03, 0.05),
    "blotchiness": (0.0, 0.06),
    "freckles": (0.0, 1.0),
    "blush": (0.0, 0.1),
    "lip_redness": (0.2, 0.7),
    "hair_lightness": (0.8, 1.2),
    "hairline": (-0.62, -0.44),
    "hair_volume": (0.04, 0.12),
    "background_r": (0.1, 0.9),
    "background_g": (0.1, 0.9),
    "background_b": (0.1, 0.9),
    "background_gradient": (-0.3, 0.3),
    "mole_x": (-0.4, 0.4),
    "mole_y": (-0.1, 0.5),
}
# name -> category probabilities (the value is the category index, as a float).
_CATEGORICAL = {
    "iris_colour": (0.3, 0.25, 0.1, 0.1, 0.15, 0.1),
    "hair_style": (0.1, 0.35, 0.3, 0.25),
    "hair_colour": (0.3, 0.25, 0.15, 0.12, 0.08, 0.1),
}
HAIR_STYLES = ("bald", "short", "medium", "long")

IDENTITY_PARAMS: tuple[str, ...] = (*_CONTINUOUS, *_CATEGORICAL, "asymmetric")
"""Names of the columns of `Identity.params`; ``asymmetric`` is 1.0 for identities with a one-sided mole and
non-mirrored blotches (never, unless `SynthConfig.asymmetry_prob` > 0), else 0.0."""

BLOTCH_GRID, FRECKLE_GRID, HAIR_GRID = 6, 24, 40
"""Sizes of the identity's noise textures (sampled at normalised coordinates, so independent of image size)."""

ACTIONS = ("smile", "mouth_open", "brow_raise", "brow_lower", "eye_closure", "lip_press", "nose_wrinkle",
           "lip_corner_down", "eye_widen")
"""Continuous facial actions, each in [0, 1]; an expression is a vector of them."""

EXPRESSIONS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear")
"""Expression classes; class ``c`` has the action vector ``intensity * PROTOTYPES[c]`` (plus a small jitter)."""

PROTOTYPES = torch.tensor([
    # smile, open, raise, lower, close, press, wrinkle, corner_down, widen
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # neutral
    [1.0, 0.25, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0],  # happy
    [0.0, 0.9, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8],  # surprise
    [0.0, 0.0, 0.35, 0.0, 0.4, 0.3, 0.0, 1.0, 0.0],  # sad
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.9, 0.0, 0.0, 0.3],  # angry
    [0.0, 0.15, 0.0, 0.5, 0.2, 0.0, 1.0, 0.4, 0.0],  # disgust
    [0.0, 0.45, 0.8, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0],  # fear
])
"""(len(EXPRESSIONS), len(ACTIONS)) action vector of each class at intensity 1."""

ACTION_JITTER = 0.05
"""Half-width of the uniform jitter added to every action of a non-neutral expression (before clamping)."""

_SPLIT_CODES = {name: i for i, name in enumerate(SPLITS)}


CLIP_LIGHTS = ("clip", "frame")
"""Light of a video clip's frames (`SynthConfig.clip_light`): one per clip, or a new one for every frame."""


@dataclass(frozen=True)
class SynthConfig:
    """Ranges of the SynthFaces world.

    Args:
        size: image size in pixels, ``64 * 2**k``.
        max_yaw, max_pitch, max_roll: pose angles are drawn in ``[-max, max]`` degrees.
        max_shift: x and y translation drawn in ``[-max_shift, max_shift]`` camera units.
        ambient, diffuse: light strength ranges.
        max_light_xy: the light direction is ``normalise([x, y, 1])`` with x, y in ``[-max_light_xy, max_light_xy]``.
        intensity: range of expression intensities (non-neutral classes).
        asymmetry_prob: probability that an identity gets asymmetric details (flagged in its parameters).
        keyframe_interval: frames between the keyframes of a video clip.
        clip_pose_step: largest change of each pose angle between keyframes, as a fraction of its range.
        clip_light: ``"clip"``: one light per video clip (as in a real video); ``"frame"``: a new light for every
            frame, so a clip's mean averages the light out too (a Stage-2 data option).
    """

    size: int = 64
    max_yaw: float = 40.0
    max_pitch: float = 20.0
    max_roll: float = 10.0
    max_shift: float = 0.005
    ambient: tuple[float, float] = (0.4, 0.65)
    diffuse: tuple[float, float] = (0.3, 0.55)
    max_light_xy: float = 0.6
    intensity: tuple[float, float] = (0.5, 1.0)
    asymmetry_prob: float = 0.0
    keyframe_interval: int = 8
    clip_pose_step: float = 0.4
    clip_light: str = "clip"

    def __post_init__(self) -> None:
        if self.size < 64 or self.size & (self.size - 1):
            raise ValueError(f"size must be 64 * 2**k, got {self.size}")
        for name in ("max_yaw", "max_pitch", "max_roll"):
            if not 0 <= getattr(self, name) < 90:
                raise ValueError(f"{name} must be in [0, 90) degrees, got {getattr(self, name)}")
        for name in ("max_shift", "max_light_xy", "clip_pose_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        for name in ("ambient", "diffuse", "intensity"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if not 0 <= self.asymmetry_prob <= 1:
            raise ValueError(f"asymmetry_prob must be in [0, 1], got {self.asymmetry_prob}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {self.keyframe_interval}")
        if self.clip_light not in CLIP_LIGHTS:
            raise ValueError(f"clip_light must be one of {CLIP_LIGHTS}, got {self.clip_light!r}")


@dataclass
class Identity:
    """Identity factors of B faces.

    Attributes:
        params: (B, len(IDENTITY_PARAMS)) parameter values, columns named by `IDENTITY_PARAMS`.
        blotch: (B, 2, BLOTCH_GRID, BLOTCH_GRID) standard normal textures of skin blotches (brightness, redness).
        freckle: (B, 1, FRECKLE_GRID, FRECKLE_GRID) uniform texture placing freckles.
        hair: (B, 1, 1, HAIR_GRID) uniform texture of hair strands (one value per strand column).
    """

    params: Tensor
    blotch: Tensor
    freckle: Tensor
    hair: Tensor

    def named(self) -> dict[str, Tensor]:
        """Each parameter as a (B, 1, 1) tensor, broadcastable against (B, H, W) maps."""
        return {name: col[:, None, None] for name, col in zip(IDENTITY_PARAMS, self.params.unbind(1), strict=True)}

    def index(self, rows: Tensor) -> Identity:
        """The identities at `rows` (a long tensor)."""
        return Identity(self.params[rows], self.blotch[rows], self.freckle[rows], self.hair[rows])



@dataclass
class Expression:
    """Expression factors of B faces.

    Attributes:
        actions: (B, len(ACTIONS)) action strengths in [0, 1].
        label: (B,) long class index into `EXPRESSIONS`.
        intensity: (B,) intensity (0 for neutral).
    """

    actions: Tensor
    label: Tensor
    intensity: Tensor


@dataclass
class Pose:
    """Head pose of B faces: (B,) tensors, angles in degrees (see `latentface.render.codes.pose_code`)."""

    yaw: Tensor
    pitch: Tensor
    roll: Tensor
    shift_x: Tensor
    shift_y: Tensor

    def stacked(self) -> Tensor:
        """(B, 5) as yaw, pitch, roll, shift_x, shift_y."""
        return torch.stack([self.yaw, self.pitch, self.roll, self.shift_x, self.shift_y], dim=1)


@dataclass
class Light:
    """Light of B faces: (B,) strengths and the direction ``normalise([dir_x, dir_y, 1])``."""

    ambient: Tensor
    diffuse: Tensor
    dir_x: Tensor
    dir_y: Tensor

    def stacked(self) -> Tensor:
        """(B, 4) as ambient, diffuse, dir_x, dir_y."""
        return torch.stack([self.ambient, self.diffuse, self.dir_x, self.dir_y], dim=1)


@dataclass
class Factors:
    """Every factor of a batch of B images.

    Attributes:
        split: split name, shared by the batch.
        identity_index: (B,) long identity index within the split.
        clip: (B,) long clip index (the sample index for single images).
        frame: (B,) long frame index within the clip (0 for single images).
        identity, expression, pose, light: the factors.
    """

    split: str
    identity_index: Tensor
    clip: Tensor
    frame: Tensor
    identity: Identity
    expression: Expression
    pose: Pose
    light: Light

    @staticmethod
    def cat(parts: Sequence[Factors]) -> Factors:
        """Concatenate factors of one split along the batch."""
        splits = {p.split for p in parts}
        if len(splits) != 1:
            raise ValueError(f"cannot concatenate factors of different splits: {sorted(splits)}")

        return Factors(split=parts[0].split, **{
            name: _cat_tensors([getattr(p, name) for p in parts])
            for name in ("identity_index", "clip", "frame", "identity", "expression", "pose", "light")
        })


def _cat_tensors(parts: list[Any]) -> Any:
    """Concatenate tensors, or dataclasses of tensors field by field, along the batch."""
    if isinstance(parts[0], Tensor):
        return torch.cat(parts)
    return type(parts[0])(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(parts[0])))


def check_split(split: str) -> str:
    """Return `split` if it is one of `SPLITS`, else raise `ValueError`."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def split_code(split: str) -> int:
    """Index of `split` in `SPLITS`."""
    return _SPLIT_CODES[check_split(split)]


def stream(seed: int, split: str, *key: int | str) -> torch.Generator:
    """A CPU generator seeded by a stable hash of ``(seed, split, *key)`` (`latentface.hashing.hashed_generator`)."""
    return hashed_generator("/".join(str(part) for part in (seed, check_split(split), *key)))


def _uniform(generator: torch.Generator, n: int) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64).float()


_LOWS = torch.tensor([lo for lo, _ in _CONTINUOUS.values()])
_HIGHS = torch.tensor([hi for _, hi in _CONTINUOUS.values()])
_CUMULATIVE = [torch.tensor(probs, dtype=torch.float64).cumsum(0)[:-1].float() for probs in _CATEGORICAL.values()]


def _identity_draws(seed: int, split: str, index: int) -> tuple[Tensor, ...]:
    """Uniform draws of the parameters, then the noise textures, of one identity."""
    gen = stream(seed, split, "identity", index)
    return (_uniform(gen, len(IDENTITY_PARAMS)), torch.randn(2, BLOTCH_GRID, BLOTCH_GRID, generator=gen),
            torch.rand(1, FRECKLE_GRID, FRECKLE_GRID, generator=gen), torch.rand(1, 1, HAIR_GRID, generator=gen))


def sample_identities(seed: int, split: str, indices: Sequence[int], config: SynthConfig) -> Identity:
    """Identity factors of `indices` in `split`, each from its own stream.

    Args:
        seed: world seed.
        split: one of `SPLITS`.
        indices: identity indices within the split.
        config: world ranges (only `asymmetry_prob` matters here).

    Returns:
        `Identity` with one row per index.
    """
    draws, blotch, freckle, hair = (torch.stack(parts) for parts in zip(*(
        _identity_draws(seed, split, int(i)) for i in indices), strict=True))
    n = len(_CONTINUOUS)
    continuous = _LOWS + (_HIGHS - _LOWS) * draws[:, :n]
    categorical = torch.stack([(draws[:, n + k, None] >= cumulative).sum(1).float()
                               for k, cumulative in enumerate(_CUMULATIVE)], dim=1)
    asymmetric = (draws[:, -1:] < config.asymmetry_prob).float()
    params = torch.cat([continuous, categorical, asymmetric], dim=1)
    return Identity(params=params, blotch=blotch, freckle=freckle, hair=hair)


def expression_actions(label: Tensor, intensity: Tensor, jitter: Tensor) -> Tensor:
    """Action vectors (B, len(ACTIONS)): ``clamp(intensity * PROTOTYPES[label] + jitter, 0, 1)``, exactly 0 for
    neutral.

    Args:
        label: (B,) long class indices.
        intensity: (B,) intensities.
        jitter: (B, len(ACTIONS)) offsets, e.g. uniform in ``[-ACTION_JITTER, ACTION_JITTER]``.
    """
    actions = intensity[:, None] * PROTOTYPES[label] + jitter
    return torch.where(label[:, None] == 0, 0.0, actions.clamp(0, 1))


def _range(draw: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * draw


def _symmetric(draw: Tensor, limit: float) -> Tensor:
    return (2 * draw - 1) * limit


_EXPRESSION_DRAWS = 2 + len(ACTIONS)
"""Uniform draws of an expression: class, intensity, one jitter per action."""


def _expression(draws: Tensor, config: SynthConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Expression labels (B,), intensities (B,) and actions (B, len(ACTIONS)) from (B, `_EXPRESSION_DRAWS`)
    uniform draws."""
    label = (draws[:, 0] * len(EXPRESSIONS)).long().clamp(max=len(EXPRESSIONS) - 1)
    intensity = torch.where(label == 0, 0.0, _range(draws[:, 1], *config.intensity))
    jitter = _symmetric(draws[:, 2:_EXPRESSION_DRAWS], ACTION_JITTER)
    return label, intensity, expression_actions(label, intensity, jitter)


def _light(draws: Tensor, config: SynthConfig) -> Tensor:
    """(B, 4) ambient, diffuse, dir_x, dir_y from (B, 4) uniform draws."""
    return torch.stack([_range(draws[:, 0], *config.ambient), _range(draws[:, 1], *config.diffuse),
                        _symmetric(draws[:, 2], config.max_light_xy), _symmetric(draws[:, 3], config.max_light_xy)],
                       dim=1)


def _angles(unit: Tensor, config: SynthConfig) -> Tensor:
    """(..., 3) yaw, pitch, roll in degrees from values in [0, 1]."""
    limits = torch.tensor([config.max_yaw, config.max_pitch, config.max_roll])
    return _symmetric(unit, 1.0) * limits


def _assemble(split: str, identity: Identity, ids: Sequence[int], clips: Sequence[int], frames: Sequence[int],
              label: Tensor, intensity: Tensor, actions: Tensor, pose: Tensor, light: Tensor) -> Factors:
    return Factors(
        split=split,
        identity_index=torch.as_tensor(ids, dtype=torch.long),
        clip=torch.as_tensor(clips, dtype=torch.long),
        frame=torch.as_tensor(frames, dtype=torch.long),
        identity=identity,
        expression=Expression(actions=actions, label=label, intensity=intensity),
        pose=Pose(*pose.unbind(1)),
        light=Light(*light.unbind(1)),
    )


def _identities_of(seed: int, split: str, ids: Sequence[int], config: SynthConfig) -> Identity:
    """Identities for a list of (possibly repeated) indices, each drawn once."""
    unique = sorted(set(ids))
    position = {i: n for n, i in enumerate(unique)}
    return sample_identities(seed, split, unique, config).index(torch.tensor([position[i] for i in ids]))


def sample_images(seed: int, split: str, items: Sequence[tuple[int, int]], config: SynthConfig) -> Factors:
    """Factors of independent images: item ``(i, k)`` is sample ``k`` of identity ``i``.

    Expression class uniform over `EXPRESSIONS`, intensity uniform in `SynthConfig.intensity`, angles, shifts
    and light uniform in their ranges.

    Args:
        seed: world seed.
        split: one of `SPLITS`.
        items: (identity, sample) pairs.
        config: world ranges.
    """
    ids = [i for i, _ in items]
    draws = torch.stack([_uniform(stream(seed, split, "image", i, k), _EXPRESSION_DRAWS + 3 + 2 + 4)
                         for i, k in items])
    rest = draws[:, _EXPRESSION_DRAWS:]
    pose = torch.cat([_angles(rest[:, :3], config), _symmetric(rest[:, 3:5], config.max_shift)], dim=1)
    return _assemble(split, _identities_of(seed, split, ids, config), ids, [k for _, k in items], [0] * len(items),
                     *_expression(draws, config), pose, _light(rest[:, 5:], config))


HOLDABLE = ("expression", "pose", "shift", "light")
"""Factors `hold_factors` can hold: ``pose`` is the three angles, ``shift`` the 2D offset."""


def check_holdable(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple; ValueError naming those not in `HOLDABLE`."""
    unknown = sorted(set(names) - set(HOLDABLE))
    if unknown:
        raise ValueError(f"cannot hold {unknown}: choose from {list(HOLDABLE)}")
    return tuple(names)


def hold_factors(factors: Factors, reference: Factors, names: Sequence[str]) -> Factors:
    """`factors` with the factors `names` (from `HOLDABLE`) taken from `reference` (same batch size) instead.

    Example: ``hold_factors(f, f0, ["light", "shift"])`` keeps the identities, expressions and head angles of `f`
    and gives every face the light and offset of the matching face of `f0`.
    """
    check_holdable(names)
    if len(factors.clip) != len(reference.clip):
        raise ValueError(f"reference has {len(reference.clip)} faces, factors {len(factors.clip)}")
    pose = factors.pose.stacked()
    held = reference.pose.stacked()
    if "pose" in names:
        pose = torch.cat([held[:, :3], pose[:, 3:]], dim=1)
    if "shift" in names:
        pose = torch.cat([pose[:, :3], held[:, 3:]], dim=1)
    return dataclasses.replace(factors, pose=Pose(*pose.unbind(1)),
                               expression=reference.expression if "expression" in names else factors.expression,
                               light=reference.light if "light" in names else factors.light)


def _smoothstep(t: Tensor) -> Tensor:
    return t * t * (3 - 2 * t)


def _clip_keyframes(seed: int, split: str, identity: int, clip: int, last: int, config: SynthConfig) -> Tensor:
    """Keyframes 0..`last` of a clip, (last + 1, 2 + len(ACTIONS) + 5): label, intensity, actions, then yaw,
    pitch, roll, shift_x, shift_y.

    Keyframe n draws its expression from its own stream. The pose of keyframe 0 is uniform in the ranges; each
    later keyframe moves every angle by at most ``clip_pose_step`` of its range from the previous one (a bounded
    random walk, clamped to the range). The shift is keyframe 0's throughout.
    """
    limits = torch.tensor([config.max_yaw, config.max_pitch, config.max_roll])
    draws = torch.stack([_uniform(stream(seed, split, "clip", identity, clip, "key", n), _EXPRESSION_DRAWS + 3 + 2)
                         for n in range(last + 1)])
    walk = draws[:, _EXPRESSION_DRAWS:_EXPRESSION_DRAWS + 3]
    angles = [_angles(walk[0], config)]
    for step in _symmetric(walk[1:], config.clip_pose_step) * limits:
        angles.append(torch.maximum(torch.minimum(angles[-1] + step, limits), -limits))
    shift = _symmetric(draws[:1, -2:], config.max_shift).expand(last + 1, 2)
    label, intensity, actions = _expression(draws, config)
    return torch.cat([label[:, None].float(), intensity[:, None], actions, torch.stack(angles), shift], dim=1)


def sample_clip(seed: int, split: str, identity: int, clip: int, frames: Sequence[int], config: SynthConfig) -> Factors:
    """Factors of frames of one video clip (one identity, one light unless ``config.clip_light == "frame"``,
    smooth expression and pose).

    The expression actions and angles of frame ``f`` are the smoothstep blend of keyframes
    ``n = f // keyframe_interval`` and ``n + 1`` (weight ``w`` of the later one); its label and intensity are
    those of the nearer keyframe (``w < 0.5``: keyframe n).

    Args:
        seed: world seed.
        split: one of `SPLITS`.
        identity: identity index within the split.
        clip: clip index of that identity.
        frames: frame indices (any order, repeats allowed).
        config: world ranges.
    """
    if not frames:
        raise ValueError("frames must not be empty")
    step = config.keyframe_interval
    before = torch.tensor([f // step for f in frames], dtype=torch.long)
    keys = _clip_keyframes(seed, split, identity, clip, int(before.max()) + 1, config)
    first, second = keys[before], keys[before + 1]
    weight = _smoothstep(torch.tensor([(f % step) / step for f in frames]))[:, None]
    blend = (1 - weight) * first + weight * second
    nearer = torch.where(weight < 0.5, first, second)
    label = nearer[:, 0].long()
    n_act = len(ACTIONS)
    actions = blend[:, 2:2 + n_act]
    intensity = nearer[:, 1]
    pose = torch.cat([blend[:, 2 + n_act:5 + n_act], first[:, 5 + n_act:]], dim=1)  # shifts are constant
    n = len(frames)
    if config.clip_light == "frame":
        light = _light(torch.stack([_uniform(stream(seed, split, "clip", identity, clip, "light", f), 4)
                                    for f in frames]), config)
    else:
        light = _light(_uniform(stream(seed, split, "clip", identity, clip), 4)[None], config).expand(n, 4)
    identities = _identities_of(seed, split, [identity], config).index(torch.zeros(n, dtype=torch.long))
    return _assemble(split, identities, [identity] * n, [clip] * n, list(frames), label, intensity, actions, pose,
                     light)

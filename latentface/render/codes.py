"""Light and pose codes: from the networks' units (each value roughly in [-1, 1]) to physical ones and back.

Light code ``(l0, l1, l2, l3)``: ambient and diffuse strengths rescaled from [-1, 1] to their configured ranges
(``(1 + l) / 2 * max + (1 - l) / 2 * min``), and the direction ``normalise([l2, l3, 1])`` (camera space: x right,
y down, z forward, so z = 1 is light coming from the camera's side).

Pose code ``(rx, ry, rz, tx, ty, tz)``: rotations in units of ``xyz_rotation_range`` degrees and translations in
units of the translation ranges (see `latentface.render.pose.view_to_pose`). In face terms: positive yaw (about
y) turns the nose towards the image's left, positive pitch (about x) turns it down, positive roll (about z)
turns the face clockwise on screen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from latentface.config import LatentFaceConfig

Scalars = float | Sequence[float] | Tensor


def rescale(x: Tensor, lo: float, hi: float) -> Tensor:
    """Map [-1, 1] to [lo, hi] (linearly; values outside extrapolate)."""
    return (1 + x) / 2 * hi + (1 - x) / 2 * lo


def _unscale(x: Tensor, lo: float, hi: float, name: str) -> Tensor:
    """Inverse of `rescale`."""
    if hi == lo:
        if not torch.all(x == lo):
            raise ValueError(f"{name} is fixed at {lo} by the config, got {x.tolist()}")
        return torch.zeros_like(x)
    return (2 * x - hi - lo) / (hi - lo)


def light_direction(light_xy: Tensor) -> Tensor:
    """Unit light direction (B, 3) from the light code's two direction values: ``normalise([x, y, 1])``."""
    d = torch.cat([light_xy, torch.ones_like(light_xy[:, :1])], dim=1)
    return d / d.pow(2).sum(1, keepdim=True).sqrt()


def decode_light(light: Tensor, config: LatentFaceConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Ambient (B,), diffuse (B,) and unit direction (B, 3) of (B, 4) light codes."""
    ambient = rescale(light[:, 0], config.min_ambient, config.max_ambient)
    diffuse = rescale(light[:, 1], config.min_diffuse, config.max_diffuse)
    return ambient, diffuse, light_direction(light[:, 2:4])


def _broadcast(values: dict[str, Scalars]) -> dict[str, Tensor]:
    """Scalars and 1-D sequences as float64 tensors of one common length."""
    tensors = {k: torch.as_tensor(v, dtype=torch.float64).detach().cpu() for k, v in values.items()}
    for k, t in tensors.items():
        if t.ndim > 1:
            raise ValueError(f"{k} must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{k} must be finite, got {t.tolist()}")
    try:
        shapes = torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    except RuntimeError as e:
        lengths = {k: len(t) for k, t in tensors.items() if t.ndim == 1}
        raise ValueError(f"sequences must have one common length, got {lengths}") from e
    return {k: t.expand(shapes) for k, t in tensors.items()}


def light_code(
    config: LatentFaceConfig,
    ambient: Scalars = 0.5,
    diffuse: Scalars = 0.5,
    direction: Sequence[float] | Tensor = (0.0, 0.0, 1.0),
) -> Tensor:
    """Light code for given strengths and direction (the inverse of `decode_light`).

    Args:
        config: the model's config (strength ranges).
        ambient: ambient strength(s), within ``[min_ambient, max_ambient]`` to stay inside what the model predicts.
        diffuse: diffuse strength(s).
        direction: (3,) or (N, 3) direction the light travels, from the light into the scene, in camera space
            (x right, y down, z into the scene); z must be positive (light from the camera's side). Normalised here.
            ``(1, 0, 1)`` lights the faces turned to the image's left, ``(0, 1, 1)`` those turned up.

    Returns:
        (4,) float32 code, or (N, 4) when any argument is a sequence of N values.
    """
    d = torch.as_tensor(direction, dtype=torch.float64).detach().cpu()
    if d.ndim not in (1, 2) or d.shape[-1] != 3:
        raise ValueError(f"direction must have shape (3,) or (N, 3), got {tuple(d.shape)}")
    if not (torch.isfinite(d).all() and (d[..., 2] > 0).all()):
        raise ValueError(f"direction must be finite with a positive z (light on the camera's side), got {d.tolist()}")
    v = _broadcast({"ambient": ambient, "diffuse": diffuse, "dir_x": d[..., 0] / d[..., 2],
                    "dir_y": d[..., 1] / d[..., 2]})
    code = torch.stack([
        _unscale(v["ambient"], config.min_ambient, config.max_ambient, "ambient"),
        _unscale(v["diffuse"], config.min_diffuse, config.max_diffuse, "diffuse"),
        v["dir_x"],
        v["dir_y"],
    ], dim=-1)
    return code.float()


def pose_code(
    config: LatentFaceConfig,
    yaw: Scalars = 0.0,
    pitch: Scalars = 0.0,
    roll: Scalars = 0.0,
    shift_x: Scalars = 0.0,
    shift_y: Scalars = 0.0,
    shift_z: Scalars = 0.0,
) -> Tensor:
    """Pose code for angles in degrees and shifts in camera units (the inverse of `view_to_pose`'s scaling).

    Args:
        config: the model's config (pose ranges).
        yaw, pitch, roll: rotations about y, x and z in degrees (see the module docstring for directions).
        shift_x, shift_y, shift_z: translation along x (right), y (down) and z (away from the camera).

    Returns:
        (6,) float32 code, or (N, 6) when any argument is a sequence of N values; angles beyond
        ``xyz_rotation_range`` give codes outside [-1, 1], which render fine but lie outside the encoder's range.
    """
    v = _broadcast({"yaw": yaw, "pitch": pitch, "roll": roll, "shift_x": shift_x, "shift_y": shift_y,
                    "shift_z": shift_z})
    rot = config.xyz_rotation_range
    code = torch.stack([
        v["pitch"] / rot,
        v["yaw"] / rot,
        v["roll"] / rot,
        _unscale(v["shift_x"], -config.xy_translation_range, config.xy_translation_range, "shift_x"),
        _unscale(v["shift_y"], -config.xy_translation_range, config.xy_translation_range, "shift_y"),
        _unscale(v["shift_z"], -config.z_translation_range, config.z_translation_range, "shift_z"),
    ], dim=-1)
    return code.float()

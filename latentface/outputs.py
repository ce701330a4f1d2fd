"""Result containers: `FaceCodes`, `Latents`, `Disentangled`, `Rendering`.

Names: the codes are ``texture``, ``shape`` (latents), ``light`` and ``pose``; the maps decoded from them are
``albedo``, ``depth``, ``normal``, ``shading`` (`Rendering`). The former code names ``albedo``, ``depth`` and ``view``
still work on `FaceCodes` and `Latents` (as attributes and keyword arguments) with a `DeprecationWarning`, until the
next release.

Each is a dataclass of batched tensors (first dimension = batch) with ``.to()``, ``.cpu()``, ``len()``,
indexing/slicing along the batch, and ``type(x).cat([...])`` to join results of several calls. Each is registered
as a pytree node, so `torch.export`, `torch.compile` and ``torch.utils._pytree`` flatten it to its tensors.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

T = TypeVar("T", bound="Batched")

RENAMED = {"albedo": "texture", "depth": "shape", "view": "pose"}
"""Former code names -> current ones (`FaceCodes`, `Latents`); the former are deprecated."""


def _warn_renamed(cls: type, old: str) -> None:
    warnings.warn(f"{cls.__name__}.{old} is deprecated and will be removed in the next release: use "
                  f"{cls.__name__}.{RENAMED[old]} ({old!r} now names a map of `Rendering` only)",
                  DeprecationWarning, stacklevel=3)


def _with_current_names(cls: type, values: dict[str, Any], former: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments with former names (`RENAMED`) moved to the current ones, with a warning each."""
    for old, value in former.items():
        new = RENAMED.get(old)
        if new is None or new not in values:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {old!r}")
        if values[new] is not None:
            raise TypeError(f"{cls.__name__}() got both {new!r} and its former name {old!r}")
        _warn_renamed(cls, old)
        values[new] = value
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise TypeError(f"{cls.__name__}() missing arguments: {', '.join(missing)}")
    return values


class Batched:
    """Mixin for dataclasses whose fields are batched tensors or other `Batched` values (or None)."""

    def _map(self: T, fn: Callable[[Tensor], Tensor]) -> T:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            values[f.name] = v._map(fn) if isinstance(v, Batched) else (fn(v) if isinstance(v, Tensor) else v)
        return type(self)(**values)

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """Move or cast every tensor, as `torch.Tensor.to`."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def cpu(self: T) -> T:
        """Every tensor on the CPU."""
        return self._map(lambda t: t.cpu())

    def detach(self: T) -> T:
        """Every tensor detached from the autograd graph."""
        return self._map(lambda t: t.detach())

    def __getitem__(self: T, index: int | slice | Tensor) -> T:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda t: t[index])

    def __len__(self) -> int:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, (Tensor, Batched)):
                return len(v)
        return 0

    @classmethod
    def cat(cls: type[T], items: list[T]) -> T:
        """Join results along the batch dimension."""
        if not items:
            raise ValueError(f"{cls.__name__}.cat needs at least one item")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            parts = [getattr(x, f.name) for x in items]
            first = parts[0]
            if isinstance(first, Batched):
                values[f.name] = type(first).cat(parts)
            elif isinstance(first, Tensor):
                values[f.name] = torch.cat(parts)
            else:
                values[f.name] = first
        return cls(**values)


@dataclass(init=False)
class FaceCodes(Batched):
    """Stage-1 codes of a batch of faces.

    Attributes:
        texture: texture latent (B, D), D = ``config.latent_dim`` (256 released), the bottleneck (after its ReLU)
            of the encoder-decoder whose decoder gives the albedo map.
        shape: shape latent (B, D), the bottleneck of the encoder-decoder whose decoder gives the depth map.
        light: raw light code (B, 4) in [-1, 1]: ambient, diffuse, direction x, direction y.
        pose: raw pose code (B, 6) in [-1, 1]: rotations x, y, z and translations x, y, z.
    """

    texture: Tensor
    shape: Tensor
    light: Tensor
    pose: Tensor

    def __init__(self, texture: Tensor | None = None, shape: Tensor | None = None, light: Tensor | None = None,
                 pose: Tensor | None = None, **former: Tensor) -> None:
        values = _with_current_names(type(self), {"texture": texture, "shape": shape, "light": light, "pose": pose},
                                     former)
        self.texture, self.shape, self.light, self.pose = (values[k] for k in ("texture", "shape", "light", "pose"))

    @property
    def albedo(self) -> Tensor:
        """Deprecated name of `texture`."""
        _warn_renamed(type(self), "albedo")
        return self.texture

    @property
    def depth(self) -> Tensor:
        """Deprecated name of `shape`."""
        _warn_renamed(type(self), "depth")
        return self.shape

    @property
    def view(self) -> Tensor:
        """Deprecated name of `pose`."""
        _warn_renamed(type(self), "view")
        return self.pose


@dataclass(init=False)
class Latents(Batched):
    """A texture and a shape latent, each (B, D) with D = ``config.latent_dim`` (256 released)."""

    texture: Tensor
    shape: Tensor

    def __init__(self, texture: Tensor | None = None, shape: Tensor | None = None, **former: Tensor) -> None:
        values = _with_current_names(type(self), {"texture": texture, "shape": shape}, former)
        self.texture, self.shape = values["texture"], values["shape"]

    @property
    def albedo(self) -> Tensor:
        """Deprecated name of `texture`."""
        _warn_renamed(type(self), "albedo")
        return self.texture

    @property
    def depth(self) -> Tensor:
        """Deprecated name of `shape`."""
        _warn_renamed(type(self), "depth")
        return self.shape


@dataclass
class Disentangled(Batched):
    """RDM split of the texture and shape latents.

    Attributes:
        identity: time-invariant part ``RDM(z)``.
        expression: the rest, ``z - RDM(z)``.
    """

    identity: Latents
    expression: Latents


@dataclass
class Rendering(Batched):
    """Rendered maps; values are the model's, unclamped.

    Attributes:
        albedo: (B, 3, H, W) canonical albedo in [0, 1] units.
        canonical_depth: (B, H, W) canonical depth after normalisation and border clamp.
        canonical_normal: (B, 3, H, W) unit normals of the canonical depth.
        shading: (B, 1, H, W) Lambertian shading under the code's light.
        canonical_image: (B, 3, H, W) ``albedo * shading``.
        image: (B, 3, H, W) the canonical image warped into the requested view (None for the canonical view only).
        depth: (B, H, W) depth rendered in that view, clamped to the depth range plus a margin.
        normal: (B, 3, H, W) normals of that depth.
        mask: (B, H, W) bool, True where the face covers the pixel.
        grid: (B, H, W, 2) where each pixel of that view samples the canonical maps (``grid_sample`` coordinates,
            ``align_corners=True``): warps any other canonical map (a mask, a label image) into the view.
    """

    albedo: Tensor
    canonical_depth: Tensor
    canonical_normal: Tensor
    shading: Tensor
    canonical_image: Tensor
    image: Tensor | None = None
    depth: Tensor | None = None
    normal: Tensor | None = None
    mask: Tensor | None = None
    grid: Tensor | None = None


# Pytree nodes: torch.compile, torch.export and DistributedDataParallel see through the containers to their tensors.
for _container in (FaceCodes, Latents, Disentangled, Rendering):
    torch.export.register_dataclass(_container, serialized_type_name=f"latentface.{_container.__name__}")

"""Result containers: `FaceCodes`, `Latents`, `Disentangled`, `Rendering`.

Each is a dataclass of batched tensors (first dimension = batch) with ``.to()``, ``.cpu()``, ``len()``,
indexing/slicing along the batch, and ``type(x).cat([...])`` to join results of several calls. Each is registered
as a pytree node, so `torch.export`, `torch.compile` and ``torch.utils._pytree`` flatten it to its tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

T = TypeVar("T", bound="Batched")


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


@dataclass
class FaceCodes(Batched):
    """Stage-1 codes of a batch of faces.

    Attributes:
        albedo: texture latent (B, 256), the albedo encoder's bottleneck after its ReLU.
        depth: shape latent (B, 256), the depth encoder's bottleneck after its ReLU.
        light: raw light code (B, 4) in [-1, 1]: ambient, diffuse, direction x, direction y.
        view: raw pose code (B, 6) in [-1, 1]: rotations x, y, z and translations x, y, z.
    """

    albedo: Tensor
    depth: Tensor
    light: Tensor
    view: Tensor


@dataclass
class Latents(Batched):
    """A texture (albedo) and a shape (depth) latent, each (B, 256)."""

    albedo: Tensor
    depth: Tensor


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

"""The values of the package's mode arguments: one `typing.Literal` type each, and the tuple of its values.

Every function that takes one of these modes annotates it with the type here and checks it against the tuple, so
a type checker and the error message agree with the code.
"""

from __future__ import annotations

from typing import Literal, get_args

FeatureProtocol = Literal["fer", "verification"]
"""`LatentFace.features`: the paper's FER feature, or the verification feature (with the flipped image)."""
FEATURE_PROTOCOLS: tuple[FeatureProtocol, ...] = get_args(FeatureProtocol)

EncodeProtocol = Literal["fer", "verification", "codes"]
"""``latentface encode`` / `latentface.extract.encode_records`: a feature protocol, or every code."""
ENCODE_PROTOCOLS: tuple[EncodeProtocol, ...] = get_args(EncodeProtocol)

EncodeOutputSuffix = Literal[".npz", ".parquet"]
"""File types of a ``latentface encode`` output: NumPy archive or Parquet table."""
ENCODE_OUTPUT_SUFFIXES: tuple[EncodeOutputSuffix, ...] = get_args(EncodeOutputSuffix)

Sampler = Literal["official", "ddim"]
"""RDM sampler: the released DDIM step (diffusers 0.14.0) or textbook DDIM."""
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)

Renderer = Literal["native", "pytorch3d"]
"""Rasterizer backend of `LatentFace.render`."""
RENDERERS: tuple[Renderer, ...] = get_args(Renderer)

View = Literal["input", "frontal"]
"""Named views of `LatentFace.render` (a pose code tensor is accepted too)."""
VIEWS: tuple[View, ...] = get_args(View)

ResizeMode = Literal["stretch", "center_crop"]
"""How an image becomes square: resized as it is, or its largest centred square first."""
RESIZE_MODES: tuple[ResizeMode, ...] = get_args(ResizeMode)

Resample = Literal["bilinear", "bicubic"]
"""Interpolation used to resize input images (antialiased when shrinking)."""
RESAMPLES: tuple[Resample, ...] = get_args(Resample)


def check_option(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise `ValueError` naming `name`, the allowed values and `value` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

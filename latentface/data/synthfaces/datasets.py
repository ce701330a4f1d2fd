"""Torch datasets that generate SynthFaces on the fly: single images and video clips.

Both implement ``__getitems__``, so a `torch.utils.data.DataLoader` with a batch size renders each batch in one
vectorised call; an item is the same whichever batch it is drawn in.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import Dataset

from latentface.data.synthfaces.factors import (
    Factors,
    SynthConfig,
    check_holdable,
    check_split,
    hold_factors,
    sample_clip,
    sample_images,
)
from latentface.data.synthfaces.render import SynthBatch, render_factors


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


class SynthFacesImages(Dataset):
    """Independent SynthFaces images: item ``n`` is sample ``n % samples_per_identity`` of identity
    ``n // samples_per_identity``, each with its own expression, pose and light (`factors.sample_images`).

    Args:
        identities: number of identities.
        samples_per_identity: images per identity.
        split: one of `SPLITS`; splits have disjoint identities.
        seed: world seed.
        config: world settings (image size, ranges); default `SynthConfig()`.
        hold: factors (of `factors.HOLDABLE`) every sample of an identity takes from its sample 0, e.g.
            ``("light", "shift")`` for what one video clip holds fixed (`hold_factors`).

    Items are dicts of tensors with the keys `ITEM_KEYS`.
    """

    def __init__(self, identities: int, samples_per_identity: int = 1, *, split: str = "train", seed: int = 0,
                 config: SynthConfig | None = None, hold: Sequence[str] = ()) -> None:
        _check_counts(identities=identities, samples_per_identity=samples_per_identity)
        self.hold = check_holdable(hold)
        self.identities = identities
        self.samples_per_identity = samples_per_identity
        self.split = check_split(split)
        self.seed = seed
        self.config = config or SynthConfig()

    def __len__(self) -> int:
        return self.identities * self.samples_per_identity

    def factors(self, indices: Sequence[int]) -> Factors:
        """Factors of the items at `indices`."""
        n = len(self)
        for index in indices:
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} items")
        items = [divmod(index % n, self.samples_per_identity) for index in indices]
        factors = sample_images(self.seed, self.split, items, self.config)
        if not self.hold:
            return factors
        reference = sample_images(self.seed, self.split, [(i, 0) for i, _ in items], self.config)
        return hold_factors(factors, reference, self.hold)

    def batch(self, indices: Sequence[int]) -> SynthBatch:
        """Render the items at `indices` in one batch."""
        return render_factors(self.factors(indices), self.config)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Tensor]]:
        return self.batch(indices).items()

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]


class SynthFacesClips(Dataset):
    """SynthFaces video clips: item ``n`` is clip ``n % clips_per_identity`` of identity ``n // clips_per_identity``,
    ``frames`` frames of one identity and light with smoothly changing expression and pose (`factors.sample_clip`).

    Args:
        identities: number of identities.
        clips_per_identity: clips per identity.
        frames: frames per clip.
        split: one of `SPLITS`; splits have disjoint identities.
        seed: world seed.
        config: world settings; default `SynthConfig()`.

    Items are dicts of tensors with the keys `ITEM_KEYS`, each with a leading frame dimension.
    """

    def __init__(self, identities: int, clips_per_identity: int = 1, frames: int = 16, *, split: str = "train",
                 seed: int = 0, config: SynthConfig | None = None) -> None:
        _check_counts(identities=identities, clips_per_identity=clips_per_identity, frames=frames)
        self.identities = identities
        self.clips_per_identity = clips_per_identity
        self.frames = frames
        self.split = check_split(split)
        self.seed = seed
        self.config = config or SynthConfig()

    def __len__(self) -> int:
        return self.identities * self.clips_per_identity

    def factors(self, index: int) -> Factors:
        """Factors of the frames of clip item `index`."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} clips")
        identity, clip = divmod(index % n, self.clips_per_identity)
        return sample_clip(self.seed, self.split, identity, clip, range(self.frames), self.config)

    def batch(self, indices: Sequence[int]) -> SynthBatch:
        """Render the frames of the clips at `indices` in one batch (clip after clip)."""
        return render_factors(Factors.cat([self.factors(i) for i in indices]), self.config)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Tensor]]:
        frames = self.batch(indices).as_dict()
        return [{key: value[n * self.frames:(n + 1) * self.frames] for key, value in frames.items()}
                for n in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]

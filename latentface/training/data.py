"""Training datasets from a `DataConfig`, and the image or clip tensor of a collated batch."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from latentface.training.config import DataConfig

IMAGE_KINDS = ("synthfaces", "synthfaces_folder", "image_folder", "celeba")
CLIP_KINDS = ("synthfaces", "synthfaces_folder", "clip_folder", "voxceleb")


def build_dataset(config: DataConfig, stage: int, image_size: int) -> Dataset:
    """The dataset of a training stage: images for Stage 1, clips of ``config.clip_length`` frames for Stage 2.

    Raises:
        ValueError: the kind does not provide what the stage needs, or the root is empty or has the wrong layout.
    """
    kinds = IMAGE_KINDS if stage == 1 else CLIP_KINDS
    if config.kind not in kinds:
        what = "images" if stage == 1 else "clips"
        raise ValueError(f"stage {stage} reads {what}: data.kind must be one of {kinds}, got {config.kind!r}")
    if config.kind == "synthfaces":
        from latentface.data.synthfaces import SynthConfig, SynthFacesClips, SynthFacesImages

        world = SynthConfig(size=image_size, clip_light=config.clip_light)
        if stage == 1:
            return SynthFacesImages(config.identities, config.samples_per_identity, split=config.split,
                                    seed=config.seed, config=world)
        return SynthFacesClips(config.identities, config.samples_per_identity, config.clip_length,
                               split=config.split, seed=config.seed, config=world)
    if config.kind == "synthfaces_folder":
        from latentface.data.synthfaces import SynthFacesFolder

        return SynthFacesFolder(config.root, config.split, clips=stage == 2)
    from latentface.data import CelebA, ClipFolder, ImageFolder, VoxCelebTracks

    if config.kind == "image_folder":
        return ImageFolder(config.root, image_size, on_error=config.on_error)
    if config.kind == "celeba":
        return CelebA(config.root, config.split, image_size, crop_list=config.crop_list, on_error=config.on_error)
    if config.kind == "voxceleb":
        return VoxCelebTracks(config.root, config.clip_length, image_size, recrop=config.recrop, seed=config.seed,
                              on_error=config.on_error)
    return ClipFolder(config.root, config.clip_length, image_size, seed=config.seed, on_error=config.on_error)


def skipped_files(batch: dict[str, Any]) -> list[str]:
    """``path<TAB>reason`` of the unreadable files the readers skipped while assembling this batch."""
    return [s for s in batch.get("skipped", []) if s]


def batch_tensor(batch: dict[str, Any]) -> Tensor:
    """Images (B, 3, S, S) or clips (B, T, 3, S, S) of a collated batch (key ``frames``, else ``image``)."""
    return batch["frames"] if "frames" in batch else batch["image"]

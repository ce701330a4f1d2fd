"""Data for training and evaluation: SynthFaces, a procedural 3D face world with ground truth
(`latentface.data.synthfaces`), and readers of image folders, CelebA, VoxCeleb face tracks and clip folders."""

from latentface.data.clips import ClipFolder, VoxCelebTracks
from latentface.data.images import CelebA, ImageFolder, read_crop_list
from latentface.data.synthfaces import (
    SPLITS,
    SynthConfig,
    SynthFacesClips,
    SynthFacesFolder,
    SynthFacesImages,
    export_synthfaces,
)

__all__ = [
    "SPLITS",
    "CelebA",
    "ClipFolder",
    "ImageFolder",
    "SynthConfig",
    "SynthFacesClips",
    "SynthFacesFolder",
    "SynthFacesImages",
    "VoxCelebTracks",
    "export_synthfaces",
    "read_crop_list",
]

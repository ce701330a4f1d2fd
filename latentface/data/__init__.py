"""Data for training and evaluation: SynthFaces, a procedural 3D face world with ground truth
(`latentface.data.synthfaces`), readers of image folders, CelebA, VoxCeleb face tracks and clip folders, and
benchmark readers: RAF-DB, AffectNet and labelled folders (`expressions`), LFW and SLLFW pairs (`pairs`)."""

from latentface.data.clips import ClipFolder, VoxCelebTracks
from latentface.data.expressions import ExpressionSet, read_affectnet, read_labelled_folder, read_rafdb
from latentface.data.image_datasets import CelebA, ImageFolder, read_crop_list
from latentface.data.pairs import PairSet, read_lfw_pairs, read_sllfw_pairs
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
    "ExpressionSet",
    "ImageFolder",
    "PairSet",
    "SynthConfig",
    "SynthFacesClips",
    "SynthFacesFolder",
    "SynthFacesImages",
    "VoxCelebTracks",
    "export_synthfaces",
    "read_affectnet",
    "read_crop_list",
    "read_labelled_folder",
    "read_lfw_pairs",
    "read_rafdb",
    "read_sllfw_pairs",
]

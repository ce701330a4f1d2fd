"""Data for training and evaluation: SynthFaces, a procedural 3D face world with ground truth
(`latentface.data.synthfaces`)."""

from latentface.data.synthfaces import (
    SPLITS,
    SynthConfig,
    SynthFacesClips,
    SynthFacesFolder,
    SynthFacesImages,
    export_synthfaces,
)

__all__ = ["SPLITS", "SynthConfig", "SynthFacesClips", "SynthFacesFolder", "SynthFacesImages", "export_synthfaces"]

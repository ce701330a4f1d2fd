"""SynthFaces: a procedural 3D face world in LatentFace's canonical frame, with every factor known.

Identities (shape, skin, hair, background), expressions (`EXPRESSIONS`, built from the continuous `ACTIONS`),
pose and light are drawn deterministically by seed (`factors`), drawn as canonical depth and albedo (`maps`),
rendered with the project's image formation (`render`), served as torch datasets (`datasets`), exported to and
read back from folders (`export`), and shown on a contact sheet (`sheet`).

Splits: identity ``i`` of split ``s`` is drawn from a stream keyed by ``(seed, s, i)``, so the train, val and
test identities are disjoint; identity indices restart at 0 in every split.
"""

from latentface.data.synthfaces.datasets import SynthFacesClips, SynthFacesImages
from latentface.data.synthfaces.factors import (
    ACTIONS,
    EXPRESSIONS,
    HAIR_STYLES,
    HOLDABLE,
    IDENTITY_PARAMS,
    PROTOTYPES,
    SPLITS,
    Expression,
    Factors,
    Identity,
    Light,
    Pose,
    SynthConfig,
    expression_actions,
    hold_factors,
    sample_clip,
    sample_identities,
    sample_images,
)
from latentface.data.synthfaces.folder import SynthFacesFolder, export_synthfaces, read_frame, read_manifest
from latentface.data.synthfaces.maps import CanonicalFace, canonical_face
from latentface.data.synthfaces.render import ITEM_KEYS, SynthBatch, generate, generate_clip, render_factors
from latentface.data.synthfaces.sheet import contact_sheet, save_contact_sheet

__all__ = [
    "ACTIONS",
    "EXPRESSIONS",
    "HAIR_STYLES",
    "HOLDABLE",
    "IDENTITY_PARAMS",
    "ITEM_KEYS",
    "PROTOTYPES",
    "SPLITS",
    "CanonicalFace",
    "Expression",
    "Factors",
    "Identity",
    "Light",
    "Pose",
    "SynthBatch",
    "SynthConfig",
    "SynthFacesClips",
    "SynthFacesFolder",
    "SynthFacesImages",
    "canonical_face",
    "contact_sheet",
    "export_synthfaces",
    "expression_actions",
    "generate",
    "generate_clip",
    "hold_factors",
    "read_frame",
    "read_manifest",
    "render_factors",
    "sample_clip",
    "sample_identities",
    "sample_images",
    "save_contact_sheet",
]

"""Model cards (``README.md``) written beside the weights."""

from __future__ import annotations

import re

from latentface.config import LatentFaceConfig

_LICENSE = re.compile(r"^license:\s*(\S.*)$", re.MULTILINE)


def model_card(config: LatentFaceConfig, *, title: str = "LatentFace weights", provenance: str | None = None,
               license: str | None = None) -> str:
    """A model card with Hub metadata, a usage snippet, the architecture summary and the provenance.

    Args:
        config: the model's configuration.
        title: heading of the card.
        provenance: markdown describing where the weights come from (sources, commands, licences).
        license: Hub licence identifier for the metadata (e.g. ``mit``), when known.
    """
    rdm = (
        f"RDM width {config.rdm_width}, {config.sampling_steps} steps, sampler `{config.sampler}`"
        if config.has_rdm
        else "no RDM (Stage 1 only)"
    )
    lines = [
        "---",
        "library_name: latentface",
        *([f"license: {license}"] if license else []),
        "tags:",
        "- face",
        "- representation-learning",
        "- latentface",
        "---",
        "",
        f"# {title}",
        "",
        "LatentFace representations: a 3D-aware autoencoder (texture, shape, pose, light) and a representation",
        "diffusion model that splits texture and shape latents into identity and expression",
        "(He et al., arXiv 2309.08273; Stage 1 after Wu et al., Unsup3D, CVPR 2020).",
        "",
        "```python",
        "from latentface import LatentFace",
        "",
        'model = LatentFace.from_pretrained("<this folder or hub id>")',
        'features = model.features(["face.jpg"], protocol="fer")',
        "```",
        "",
        "## Configuration",
        "",
        f"- input: {config.image_size}x{config.image_size} RGB in [0, 1], resized with {config.preprocess.resample}"
        f" ({config.preprocess.resize_mode})",
        f"- autoencoder width {config.ae_width}, light/pose width {config.light_pose_width}, "
        f"latent size {config.latent_dim}",
        f"- {rdm}",
        "",
    ]
    if provenance:
        lines += ["## Provenance", "", provenance.strip(), ""]
    return "\n".join(lines)


def derived_card(config: LatentFaceConfig, parent: str, parent_card: str | None) -> str:
    """The card of weights that differ from the ones they were loaded as (fine-tuned, edited, reconfigured).

    It describes the model as it is: the architecture from `config`, and where it came from, but none of the
    parent's scores or claims, which were measured on other weights. The parent's licence metadata carries over.

    Args:
        config: the model's configuration now.
        parent: the name or folder the weights were loaded from.
        parent_card: the parent's card, if it had one.
    """
    license = None
    if parent_card is not None and parent_card.startswith("---"):
        found = _LICENSE.search(parent_card.split("\n---", 1)[0])
        license = found[1].strip() if found else None
    provenance = (
        f"Derived from `{parent}`: the weights or the configuration changed after they were loaded from it (for "
        f"instance by fine-tuning), so the scores and descriptions in the card of `{parent}` do not apply here. "
        f"The terms of use of `{parent}` carry over (see its card)."
    )
    return model_card(config, title=f"LatentFace weights derived from {parent}", provenance=provenance,
                      license=license)

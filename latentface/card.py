"""Model cards (``README.md``) written beside the weights."""

from __future__ import annotations

from latentface.config import LatentFaceConfig


def model_card(config: LatentFaceConfig, *, title: str = "LatentFace weights", provenance: str | None = None) -> str:
    """A model card with Hub metadata, a usage snippet, the architecture summary and the provenance.

    Args:
        config: the model's configuration.
        title: heading of the card.
        provenance: markdown describing where the weights come from (sources, commands, licences).
    """
    rdm = (
        f"RDM width {config.rdm_width}, {config.sampling_steps} steps, sampler `{config.sampler}`"
        if config.has_rdm
        else "no RDM (Stage 1 only)"
    )
    lines = [
        "---",
        "library_name: latentface",
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

"""Encode, disentangle and render faces with LatentFace, offline.

    python examples/quickstart.py                       # randomly initialised model (no download)
    python examples/quickstart.py --weights DIR_OR_HUB_ID path/to/face.jpg ...

Without --weights the model has random weights: the numbers are meaningless, but every step of the API
runs. Convert the official checkpoints with `latentface convert` to get real ones.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from latentface import LatentFace


def demo_images(n: int = 4) -> list[Image.Image]:
    """Smooth synthetic test images (no face data ships with the package yet)."""
    yy, xx = np.mgrid[0:96, 0:96] / 95.0
    return [
        Image.fromarray((255 * np.stack([xx, yy, np.full_like(xx, i / max(n - 1, 1))], -1)).astype(np.uint8))
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", help="image files (default: synthetic images)")
    parser.add_argument("--weights", help="weights folder, built-in name or Hub id (default: random init)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = LatentFace.from_pretrained(args.weights) if args.weights else LatentFace().eval()
    images = args.images or demo_images()

    with torch.inference_mode():
        codes = model.encode(images)                       # texture/shape latents, light, pose
        parts = model.disentangle(codes, generator=torch.Generator().manual_seed(args.seed))
        view = model.render(codes)                         # canonical albedo, depth, normals, shading
        fer = model.features(images, protocol="fer", generator=torch.Generator().manual_seed(args.seed))

    print(f"texture latent {tuple(codes.albedo.shape)}, shape latent {tuple(codes.depth.shape)}, "
          f"light {tuple(codes.light.shape)}, pose {tuple(codes.view.shape)}")
    print(f"identity texture {tuple(parts.identity.albedo.shape)}, "
          f"expression texture {tuple(parts.expression.albedo.shape)}")
    print(f"canonical image {tuple(view.canonical_image.shape)}, depth range "
          f"[{view.canonical_depth.min():.3f}, {view.canonical_depth.max():.3f}]")
    print(f"FER features {tuple(fer.shape)}")


if __name__ == "__main__":
    main()

"""Encode, disentangle and reconstruct the bundled sample faces with the bundled `synthfaces-tiny` weights, offline.

    python examples/quickstart.py                                   # bundled weights and sample faces
    python examples/quickstart.py --weights DIR_OR_HUB_ID face1.jpg face2.png --output out/

Writes `reconstruction.png` (one row per face: input, albedo, depth, normals, shading, reconstruction, frontal
view, views relit from the left, top and right) and `turntable.gif` (the first face under a yaw sweep) to the
output folder. `latentface reconstruct` does the same per face, with meshes, for any number of images.
`synthfaces-tiny` is a small model trained on synthetic faces (SynthFaces) on a CPU: it shows the pipeline, it is
not a model of real faces: `--weights latentface-official` (the authors' weights, see the README's "Real photos")
for those.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latentface import LatentFace
from latentface.reconstruct import COLUMNS, labelled_grid, reconstruction_panels, save_picture
from latentface.visualize import save_turntable

SAMPLES = sorted((Path(__file__).parent / "faces").glob("*.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, default=SAMPLES, help="face images (default: examples/faces)")
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--out", "--output", dest="output", type=Path, default=Path("quickstart-output"),
                        help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"loading weights {args.weights}", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    with torch.inference_mode():
        print(f"encoding and disentangling {len(args.images)} faces", flush=True)
        batch = model.preprocess(args.images)                 # (B, 3, S, S) in [0, 1], S = model.config.image_size
        codes = model.encode(batch)                           # texture/shape latents, light, pose
        parts = model.disentangle(codes, generator=torch.Generator().manual_seed(args.seed))
        print("rendering reconstructions, frontal and relit views", flush=True)
        view = model.render(codes)                            # reconstruction in the input view
        panels = reconstruction_panels(model, batch, codes)   # input, maps, reconstruction, frontal, relit views
        fer = model.features(batch, protocol="fer", generator=torch.Generator().manual_seed(args.seed))

    sheet = save_picture(labelled_grid(panels, COLUMNS), args.output / "reconstruction.png")
    print("rendering a 16-frame turntable of the first face", flush=True)
    turntable = save_turntable(model, codes[:1], args.output / "turntable.gif", frames=16, max_yaw=35)

    error = ((view.image - batch).abs().mean(1) * view.mask).sum() / view.mask.sum()
    print(f"{len(batch)} faces from {args.images[0].parent}: texture latent {tuple(codes.texture.shape)}, "
          f"shape latent {tuple(codes.shape.shape)}, light {tuple(codes.light.shape)}, pose {tuple(codes.pose.shape)}")
    print(f"identity / expression texture latents {tuple(parts.identity.texture.shape)} / "
          f"{tuple(parts.expression.texture.shape)}; FER features {tuple(fer.shape)}")
    print(f"reconstruction: mean absolute error {error:.3f} inside the mask; yaw of the faces "
          f"{[round(float(y), 1) for y in codes.pose[:, 1] * model.config.xyz_rotation_range]} degrees")
    print(f"wrote {sheet} and {turntable}")


if __name__ == "__main__":
    main()

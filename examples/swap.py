"""Identity / expression swap: the identity latents of face A with the expression latents of face B, and back.

    python examples/swap.py                                    # bundled weights, two sample faces
    python examples/swap.py a.png b.png --out swap/

`model.disentangle` splits each face's texture and shape latents into an identity part (the RDM's sample) and
an expression part (the rest: latent - identity). Adding A's identity to B's expression (and B's to A's) gives
new latents, which `model.render` decodes into albedo and depth and renders frontal under the light of the face
whose identity they carry. Writes `swap.png`, one row per face: input, its frontal reconstruction, then the swap
with its identity (A's identity + B's expression in A's row, B's identity + A's expression in B's row). Prints
how large the expression parts are and how far each swap moved the latents.

`synthfaces-tiny` is a small model trained on SynthFaces on a CPU, and a weak disentangler: its expression parts
are 13-30% of the latents of the sample faces (they keep the expression of the raw latents; its identity parts
carry less of it, clearly so for shape: see its model card), and the swaps change the frontal renders only
slightly (about 0.025 on average). Results on real faces need the official weights with the RDM
(`--weights latentface-official`, see the README's "Real photos").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latentface import FaceCodes, LatentFace
from latentface.visualize import save_grid

FACES = Path(__file__).parent / "faces"


def on_white(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rendered images clamped to [0, 1], white where the face does not cover the pixel."""
    return torch.where(mask[:, None], image.clamp(0, 1), torch.ones_like(image))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", nargs="?", type=Path, default=FACES / "synthface-03-neutral.png", help="face A")
    parser.add_argument("b", nargs="?", type=Path, default=FACES / "synthface-00-surprise.png", help="face B")
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--out", "--output", type=Path, default=Path("swap-output"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"loading weights {args.weights}", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    with torch.inference_mode():
        print(f"encoding and disentangling {args.a.name} and {args.b.name}", flush=True)
        batch = model.preprocess([args.a, args.b])           # (2, 3, S, S): A, then B
        codes = model.encode(batch)
        parts = model.disentangle(codes, generator=torch.Generator().manual_seed(args.seed))
        identity, expression = parts.identity, parts.expression
        swapped = [1, 0]                                     # row A takes B's expression, row B takes A's

        # New codes: own identity + the other's expression; own light; frontal pose (set by view="frontal").
        mixed = FaceCodes(texture=identity.texture + expression.texture[swapped],
                          shape=identity.shape + expression.shape[swapped], light=codes.light, pose=codes.pose)
        print("rendering both faces and both swaps frontal", flush=True)
        own = model.render(codes, view="frontal")
        swap = model.render(mixed, view="frontal")

    rows = torch.stack([batch, on_white(own.image, own.mask), on_white(swap.image, swap.mask)], dim=1)
    sheet = save_grid(rows.flatten(0, 1), args.out / "swap.png", nrow=3)

    for name in ("texture", "shape"):
        z, e, m = getattr(codes, name), getattr(expression, name), getattr(mixed, name)
        share = (e.norm(dim=1) / z.norm(dim=1)).tolist()
        moved = ((m - z).norm(dim=1) / z.norm(dim=1)).tolist()
        print(f"{name:>7} latents: |expression| / |latent| A {share[0]:.3f}, B {share[1]:.3f}; "
              f"the swap moved them by A {moved[0]:.3f}, B {moved[1]:.3f} (relative)")
    change = (swap.image - own.image).abs().mean(dim=(1, 2, 3)).tolist()
    print(f"mean absolute change of the frontal render by the swap: A {change[0]:.4f}, B {change[1]:.4f}")
    print(f"wrote {sheet}")


if __name__ == "__main__":
    main()

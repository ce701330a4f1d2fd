"""Relighting: render one face under a sweep of light directions.

    python examples/relight.py                                 # bundled weights and the first sample face
    python examples/relight.py face.png --frames 0 --out relit/  # your face crop, no animation

Encodes a face (`model.encode`: texture, shape, light and pose), then replaces the predicted light by light
codes made with `model.light_code` (ambient and diffuse strengths, and the direction the light travels: x right,
y down, z away from the camera) and renders the face in its own pose (`model.render(codes, light=...)`).
Writes `relit.png`, a grid of light positions at 128 px, labelled (rows: light above, level with, below the face;
columns: from the viewer's left to the right), and `relit.gif`, the light circling the face (`--frames 0` skips
it). Prints progress lines, then how the brightness of the left and right halves of the face follows the light.

`synthfaces-tiny` is a small model trained on SynthFaces on a CPU: it relights SynthFaces-like images, not real
photos (`--weights unsup3d-celeba` for those, downloaded on first use).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from latentface import FaceCodes, LatentFace
from latentface.reconstruct import labelled_grid, save_picture
from latentface.visualize import save_animation

SAMPLE = Path(__file__).parent / "faces" / "synthface-03-neutral.png"


def render_lit(model: LatentFace, codes: FaceCodes, sources: list[tuple[float, float]], ambient: float,
               diffuse: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first face in its own pose lit from each source position, in one batch.

    Args:
        model: the model that encoded `codes`.
        codes: codes of the face (the first item is used).
        sources: light positions (x, y) in front of the face, in camera axes (x right, y down), e.g. (-1, 0) is
            light from the viewer's left.
        ambient, diffuse: light strengths.

    Returns:
        Images (N, 3, H, W) in [0, 1], white outside the face, and the face mask (H, W).
    """
    # `light_code` takes the direction the light travels (shading is max(0, <inward normal, direction>)), so a
    # light placed at (x, y) in front of the face travels along (-x, -y, 1).
    light = model.light_code(ambient=ambient, diffuse=diffuse, direction=[(-x, -y, 1.0) for x, y in sources])
    view = model.render(codes[torch.zeros(len(sources), dtype=torch.long)], light=light)
    return torch.where(view.mask[:, None], view.image.clamp(0, 1), torch.ones_like(view.image)), view.mask[0]


def half_brightness(image: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Mean brightness of the left and right halves of the image, over the pixels in `mask`."""
    gray, half = image.mean(0), image.shape[-1] // 2
    left, right = mask.clone(), mask.clone()
    left[:, half:], right[:, :half] = False, False
    return float(gray[left].mean()), float(gray[right].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", type=Path, default=SAMPLE, help="face image (default: a sample face)")
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--ambient", type=float, default=0.3, help="ambient strength")
    parser.add_argument("--diffuse", type=float, default=0.8, help="diffuse strength")
    parser.add_argument("--frames", type=int, default=24, help="frames of the animation (0: none)")
    parser.add_argument("--out", "--output", type=Path, default=Path("relight-output"), help="output folder")
    args = parser.parse_args()

    print(f"loading weights {args.weights}", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    with torch.inference_mode():
        print(f"encoding {args.image}", flush=True)
        codes = model.encode([args.image])

        # A 3 x 5 grid of light positions: rows above, level with and below the face; columns left to right.
        xs, ys = (-1.0, -0.5, 0.0, 0.5, 1.0), (-0.6, 0.0, 0.6)
        print(f"rendering the face under {len(xs) * len(ys)} lights", flush=True)
        grid, mask = render_lit(model, codes, [(x, y) for y in ys for x in xs], args.ambient, args.diffuse)
        panels = grid.reshape(len(ys), len(xs), *grid.shape[1:])
        columns = ["far left", "left", "in front", "right", "far right"]
        sheet = labelled_grid(panels, columns, row_labels=["light above", "level", "below"])
        written = [save_picture(sheet, args.out / "relit.png")]

        # The light circling the face, 45 degrees off the viewing axis, starting on the right, going down first.
        if args.frames > 0:
            print(f"rendering {args.frames} frames of a circling light", flush=True)
            angles = [2 * math.pi * k / args.frames for k in range(args.frames)]
            frames, _ = render_lit(model, codes, [(math.cos(a), math.sin(a)) for a in angles], args.ambient,
                                   args.diffuse)
            written.append(save_animation(frames, args.out / "relit.gif", fps=12))

    level = len(xs)  # the middle row: light level with the face
    for column, x in enumerate(xs):
        left, right = half_brightness(grid[level + column], mask)
        print(f"light at x {x:+.1f} (level): brightness left half {left:.3f}, right half {right:.3f}")
    print(f"wrote {' and '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()

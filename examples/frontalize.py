"""Frontalization: encode faces seen from the side and render them from the front (pose code zero).

    python examples/frontalize.py                              # bundled weights, SynthFaces yaw sweep
    python examples/frontalize.py --yaws -45 -30 -15 0 15 30 45 --identities 2 --out frontal/
    python examples/frontalize.py face1.png face2.jpg          # your own face crops instead

By default renders SynthFaces test-split faces (identities the bundled model never saw) under a sweep of head
yaws, the expression, light and everything else held fixed per identity; with image paths, frontalizes those.
Each face is encoded (`model.encode`: texture, shape, light and pose) and rendered with the pose set to zero
(`model.render(codes, view="frontal")`). Writes `frontalized.png` (for each identity a row of inputs, then a row
of their frontal renders, at 128 px, columns labelled with the yaw or file name, rows with what they show) and
prints the estimated yaw of each input beside the true one, and how much the frontal renders of one identity
still differ from each other compared with the inputs; progress lines say what it is doing.

`synthfaces-tiny` is a small model trained on SynthFaces on a CPU: it frontalizes SynthFaces-like images, not
real photos (`--weights unsup3d-celeba` for those, downloaded on first use).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from latentface import LatentFace
from latentface.data.synthfaces import Pose, SynthConfig, render_factors, sample_images
from latentface.reconstruct import labelled_grid, save_picture


def yaw_sweep(identities: int, yaws: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SynthFaces images (identities * len(yaws), 3, 64, 64), identity after identity, and the true yaws.

    Every image of one identity shares its first sample's expression and light; only the yaw differs.
    """
    config = SynthConfig()
    factors = sample_images(seed, "test", [(i, 0) for i in range(identities) for _ in yaws], config)
    yaw = torch.tensor(yaws, dtype=torch.float32).repeat(identities)
    zero = torch.zeros_like(yaw)
    factors = dataclasses.replace(factors, pose=Pose(yaw=yaw, pitch=zero, roll=zero, shift_x=zero, shift_y=zero))
    return render_factors(factors, config).image, yaw


def spread(images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute difference of each image from the group's mean image, over the pixels in `mask`."""
    deviation = (images - images.mean(0, keepdim=True)).abs().mean(1)
    return float((deviation * mask).sum() / mask.sum().clamp(min=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, help="face images (default: a SynthFaces yaw sweep)")
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--identities", type=int, default=3, help="SynthFaces identities in the sweep")
    parser.add_argument("--yaws", type=float, nargs="+", default=[-40, -20, 0, 20, 40], help="sweep, in degrees")
    parser.add_argument("--out", "--output", type=Path, default=Path("frontalize-output"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.identities < 1:
        parser.error("--identities must be at least 1")

    print(f"loading weights {args.weights}", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    if args.images:
        print(f"reading {len(args.images)} images", flush=True)
        batch, true_yaw, groups = model.preprocess(args.images), None, 1
        columns, names = [path.name for path in args.images], [""]
    else:
        print(f"rendering {args.identities} SynthFaces identities under {len(args.yaws)} yaws", flush=True)
        batch, true_yaw = yaw_sweep(args.identities, args.yaws, args.seed)
        groups = args.identities
        columns, names = [f"yaw {y:g}" for y in args.yaws], [f"identity {g + 1}: " for g in range(groups)]

    print(f"encoding {len(batch)} faces and rendering them frontal", flush=True)
    with torch.inference_mode():
        codes = model.encode(batch)                       # codes.pose[:, 1] is the yaw, in xyz_rotation_range units
        frontal = model.render(codes, view="frontal")     # same texture, shape and light; pose code all zero
    front = torch.where(frontal.mask[:, None], frontal.image.clamp(0, 1), torch.ones_like(frontal.image))

    # One row of inputs, then one row of frontal renders, per identity (or one pair of rows for your images).
    per_row = len(batch) // groups
    rows, row_labels = [], []
    for g in range(groups):
        rows += [batch[g * per_row:(g + 1) * per_row], front[g * per_row:(g + 1) * per_row]]
        row_labels += [f"{names[g]}input", f"{names[g]}frontal"]
    panels = torch.stack(rows)                            # (2 * groups, per_row, 3, S, S)
    sheet = save_picture(labelled_grid(panels, columns, row_labels=row_labels), args.out / "frontalized.png")

    estimated = codes.pose[:, 1] * model.config.xyz_rotation_range
    print(f"{len(batch)} faces; estimated yaw {[round(float(y), 1) for y in estimated]} degrees")
    if true_yaw is not None:
        print(f"true yaw      {[round(float(y), 1) for y in true_yaw]} degrees")
        both = frontal.mask.reshape(groups, per_row, *frontal.mask.shape[1:]).all(1)
        before = [spread(batch[g * per_row:(g + 1) * per_row], both[g]) for g in range(groups)]
        after = [spread(frontal.image[g * per_row:(g + 1) * per_row], both[g]) for g in range(groups)]
        print(f"difference between the views of one identity (mean absolute, inside the frontal mask): "
              f"inputs {sum(before) / groups:.4f}, frontal renders {sum(after) / groups:.4f}")
    print(f"wrote {sheet}")


if __name__ == "__main__":
    main()

"""Face verification: are two faces the same person? Cosine similarity of LatentFace's verification features.

    python examples/verification.py                            # bundled weights, 16 SynthFaces identities
    python examples/verification.py --identities 40 --samples-per-identity 6 --out verification/

Renders SynthFaces test-split faces (each with its own expression, pose and light; identities the bundled model
never saw), takes the paper's verification feature (`model.features(..., "verification")`: identity and raw
latents of the image and of its mirror image), and scores every same-identity pair and as many randomly drawn
different-identity pairs by cosine similarity. Prints both score distributions, the accuracy at the best
threshold and the ROC AUC, and writes `scores.json` and `hardest-pairs.png` (the least similar same-identity
pair, then the most similar different-identity pair) to the output folder.

The threshold is chosen on the pairs it is scored on, so that accuracy is optimistic; the LFW protocol picks it
on 9 folds and tests on the 10th. `synthfaces-tiny` is a small model trained on SynthFaces on a CPU: these are
synthetic faces, not a measure of verification on real photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from latentface import LatentFace
from latentface.data.synthfaces import SynthFacesImages
from latentface.eval import auc, roc_curve
from latentface.fileio import write_atomic
from latentface.visualize import save_grid


def best_threshold(same: torch.Tensor, different: torch.Tensor) -> tuple[float, float, float]:
    """The ROC curve of the pairs (`latentface.eval.roc_curve`): the threshold (score >= t means "same person")
    with the best accuracy on them, that accuracy, and the area under the curve."""
    scores = torch.cat([same, different])
    truth = torch.cat([torch.ones_like(same, dtype=torch.bool), torch.zeros_like(different, dtype=torch.bool)])
    fpr, tpr, thresholds = roc_curve(scores, truth)
    accuracy = (tpr * len(same) + (1 - fpr) * len(different)) / len(scores)
    best = int(accuracy.argmax())
    return float(thresholds[best]), float(accuracy[best]), auc(fpr, tpr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--identities", type=int, default=16, help="SynthFaces identities")
    parser.add_argument("--samples-per-identity", type=int, default=4, help="faces per identity")
    parser.add_argument("--out", "--output", type=Path, default=Path("verification-output"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.identities < 2 or args.samples_per_identity < 2:
        parser.error("need at least 2 identities and 2 samples per identity to form same and different pairs")

    # 1. Faces with known identities, and their verification features (RDM start noise seeded: reproducible).
    faces = SynthFacesImages(args.identities, args.samples_per_identity, split="test", seed=args.seed)
    print(f"rendering {len(faces)} SynthFaces faces", flush=True)
    batch = faces.batch(range(len(faces)))
    identity = batch.factors.identity_index
    print(f"loading weights {args.weights} and extracting verification features", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    features = model.features(batch.image, protocol="verification", generator=torch.Generator().manual_seed(args.seed))

    # 2. Pairs: every same-identity pair, and as many different-identity pairs drawn at random (balanced set).
    first, second = torch.triu_indices(len(faces), len(faces), offset=1)
    is_same = identity[first] == identity[second]
    pick = torch.randperm(int((~is_same).sum()), generator=torch.Generator().manual_seed(args.seed))
    different_pairs = (~is_same).nonzero()[:, 0][pick[: int(is_same.sum())]]
    same_pairs = is_same.nonzero()[:, 0]

    # 3. Cosine similarity of each pair, then the verification metrics.
    unit = F.normalize(features, dim=1)
    score = (unit[first] * unit[second]).sum(1)
    same, different = score[same_pairs], score[different_pairs]
    threshold, accuracy, area = best_threshold(same, different)

    print(f"{len(faces)} SynthFaces test faces of {args.identities} identities; verification features "
          f"{tuple(features.shape)}; {len(same)} same-identity and {len(different)} different-identity pairs")
    for name, values in (("same", same), ("different", different)):
        print(f"cosine similarity, {name:>9} identity: mean {values.mean():.4f} std {values.std():.4f} "
              f"min {values.min():.4f} max {values.max():.4f}")
    print(f"best threshold {threshold:.4f}: accuracy {accuracy:.3f} (chance 0.500); ROC AUC {area:.4f}")

    # 4. Outputs: the scores, and the two hardest pairs side by side.
    hardest = (same_pairs[same.argmin()], different_pairs[different.argmax()])
    images = [batch.image[i] for pair in hardest for i in (first[pair], second[pair])]
    sheet = save_grid(images, args.out / "hardest-pairs.png", nrow=4)
    report = {"weights": args.weights, "identities": args.identities, "samples_per_identity": args.samples_per_identity,
              "seed": args.seed, "threshold": threshold, "accuracy": accuracy, "roc_auc": area,
              "same": same.tolist(), "different": different.tolist()}
    path = write_atomic(args.out / "scores.json", (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {path} and {sheet}")


if __name__ == "__main__":
    main()

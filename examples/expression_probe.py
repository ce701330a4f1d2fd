"""Linear expression probe: how much do LatentFace's FER features know about facial expression?

    python examples/expression_probe.py                        # bundled weights, 24 SynthFaces identities
    python examples/expression_probe.py --identities 40 --samples-per-identity 21 --out probe/

Renders labelled SynthFaces test-split faces (7 expression classes, random pose and light; identities the bundled
model never saw), takes the paper's FER feature (`model.features(..., "fer")`: texture and shape latents with their
expression parts) and the raw Stage-1 latents, trains a scikit-learn logistic regression on the faces of the
first half of the identities and tests it on the other half (so no test person was seen in training). Prints the
test accuracy of both beside chance and writes `probe.json` to the output folder.

scikit-learn is needed for this example only (`pip install scikit-learn`). `synthfaces-tiny` is a small model
trained on SynthFaces on a CPU: its latents encode expression only in part (0.29 on this small set, 0.40 on its
card's 1,024 test images, chance 0.14; a noisy number on few faces); the
official weights (`--weights latentface-official`) are what the paper's FER numbers are about.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from latentface import LatentFace
from latentface.data.synthfaces import EXPRESSIONS, SynthFacesImages
from latentface.fileio import write_atomic

try:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError as error:  # an example-only dependency
    raise SystemExit("expression_probe.py needs scikit-learn: pip install scikit-learn") from error


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, c: float) -> float:
    """Fit standardisation + logistic regression on the `train` rows, return the accuracy on the others."""
    x, y, test = features.numpy(), labels.numpy(), ~train
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    classifier.fit(x[train.numpy()], y[train.numpy()])
    return float(classifier.score(x[test.numpy()], y[test.numpy()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--identities", type=int, default=24, help="SynthFaces identities (half train, half test)")
    parser.add_argument("--samples-per-identity", type=int, default=14, help="faces per identity")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--out", "--output", type=Path, default=Path("expression_probe-output"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.identities < 2:
        parser.error("--identities must be at least 2 (one half trains, the other tests)")

    # 1. Labelled faces: item n is sample n % K of identity n // K, each with a random expression, pose and light.
    faces = SynthFacesImages(args.identities, args.samples_per_identity, split="test", seed=args.seed)
    print(f"rendering {len(faces)} labelled SynthFaces faces", flush=True)
    batch = faces.batch(range(len(faces)))
    labels = batch.factors.expression.label
    train = batch.factors.identity_index < args.identities // 2    # identity-disjoint split

    # 2. Features. The RDM's start noise comes from a seeded generator, so the features are reproducible.
    print(f"loading weights {args.weights} and extracting FER features", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    with torch.inference_mode():
        fer = model.features(batch.image, protocol="fer", generator=torch.Generator().manual_seed(args.seed))
        codes = model.encode(batch.image)
    raw = torch.cat([codes.texture, codes.shape], dim=1)             # Stage-1 texture and shape latents

    # 3. Probe each feature set; chance = always answering the most frequent training class.
    majority = Counter(labels[train].tolist()).most_common(1)[0][0]
    chance = float((labels[~train] == majority).float().mean())
    print("training the logistic-regression probes", flush=True)
    accuracy = {name: probe_accuracy(x, labels, train, args.C) for name, x in (("fer", fer), ("raw", raw))}

    print(f"{len(faces)} SynthFaces test faces, {len(EXPRESSIONS)} expressions; train on {int(train.sum())} faces "
          f"of {args.identities // 2} identities, test on {int((~train).sum())} faces of the other "
          f"{args.identities - args.identities // 2}")
    print(f"fer features {tuple(fer.shape)}: accuracy {accuracy['fer']:.3f}")
    print(f"raw latents  {tuple(raw.shape)}: accuracy {accuracy['raw']:.3f}")
    print(f"chance (most frequent training class, {EXPRESSIONS[majority]}): {chance:.3f}; uniform guess "
          f"{1 / len(EXPRESSIONS):.3f}")

    report = {"weights": args.weights, "identities": args.identities, "samples_per_identity": args.samples_per_identity,
              "C": args.C, "seed": args.seed, "train_faces": int(train.sum()), "test_faces": int((~train).sum()),
              "accuracy": accuracy, "chance": chance, "classes": list(EXPRESSIONS)}
    path = write_atomic(args.out / "probe.json", (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

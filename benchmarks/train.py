"""Train LatentFace: Stage 1 (3D-aware autoencoder) or Stage 2 (RDM), on one CPU, several processes or GPUs.

Examples::

    accelerate launch benchmarks/train.py --stage 1 --config benchmarks/configs/stage1_celeba.toml
    accelerate launch benchmarks/train.py --stage 2 --config benchmarks/configs/stage2_voxceleb.toml \\
        init=runs/stage1/final
    accelerate launch --num_processes 2 --cpu benchmarks/train.py --config CONFIG optim.batch_size=8
    python benchmarks/train.py --config CONFIG --resume          # continue from the newest checkpoint

Every setting of the config file can be overridden as ``section.key=value`` (e.g. ``optim.lr=2e-4``,
``data.root=/data/celeba``, ``model.ae_width=32``); the resolved configuration is saved in the run folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from latentface.errors import LatentFaceError
from latentface.training.config import load_train_config
from latentface.training.trainer import Trainer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML configuration (default: the built-in defaults)")
    p.add_argument("--stage", type=int, choices=[1, 2], help="training stage (overrides the config's)")
    p.add_argument("--output-dir", help="run folder (overrides the config's output_dir)")
    p.add_argument("--perceptual-weights", metavar="FILE",
                   help="local VGG16 state dict for the Stage-1 perceptual loss (instead of downloading it)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="settings overriding the config")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.stage is not None:
        overrides.append(f"stage={args.stage}")
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    if args.perceptual_weights is not None:
        overrides.append(f"loss.perceptual_weights={args.perceptual_weights}")
    try:
        config = load_train_config(args.config, overrides)
    except (ValueError, OSError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    command = "accelerate launch benchmarks/train.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        trainer = Trainer(config, command=command)
        final = trainer.train(resume=args.resume)
    except (LatentFaceError, ValueError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    if trainer.accelerator.is_main_process:
        print(f"weights written to {final} (load with LatentFace.from_pretrained({str(final)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

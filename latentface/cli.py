"""The `latentface` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from latentface.data.synthfaces.factors import SPLITS
from latentface.errors import LatentFaceError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _convert(args: argparse.Namespace) -> int:
    from latentface.convert import convert_checkpoints

    out = convert_checkpoints(args.output, unsup3d=args.unsup3d, rdm=args.rdm, overwrite=args.overwrite)
    print(f"wrote {out} (load with LatentFace.from_pretrained({str(out)!r}))")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from latentface import hub

    folder = hub.resolve(args.weights, revision=args.revision, local_files_only=args.local_files_only)
    print(f"# weights folder: {folder}\n")
    print(hub.load_config(folder).to_json())
    card = hub.read_card(folder)
    print(card if card is not None else "(no model card)")
    return EXIT_OK


def _synth(args: argparse.Namespace) -> int:
    from latentface.data.synthfaces import SynthConfig, export_synthfaces

    splits = list(dict.fromkeys(args.split))
    out = export_synthfaces(
        args.output,
        identities=args.identities,
        clips_per_identity=args.clips_per_identity,
        frames=args.frames,
        seed=args.seed,
        splits=splits,
        config=SynthConfig(size=args.size),
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
    )
    images = len(splits) * args.identities * args.clips_per_identity * args.frames
    print(f"wrote {images} SynthFaces images ({args.size} px, splits {', '.join(splits)}) and their ground truth "
          f"to {out} (manifest: {out / 'manifest.json'})")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _image_size(text: str) -> int:
    value = int(text)
    if value < 64 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be 64 * 2**k (64, 128, 256, ...), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `latentface` command."""
    parser = argparse.ArgumentParser(prog="latentface", description="LatentFace facial representations.")
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser(
        "convert",
        help="convert official Unsup3D / LatentFace checkpoints to a weights folder",
        description="Convert official checkpoints (read with torch.load(weights_only=True)) into a folder that "
        "LatentFace.from_pretrained loads. Every key and shape is checked; on error nothing is written.",
    )
    convert.add_argument("--unsup3d", metavar="PTH", help="Unsup3D checkpoint030.pth (Stage 1)")
    convert.add_argument("--rdm", metavar="PTH", help="LatentFace diffusion_64.pth (RDM, width 128 or 1024)")
    convert.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    convert.add_argument("--overwrite", action="store_true", help="write into an existing non-empty folder")
    convert.set_defaults(func=_convert)

    info = sub.add_parser("info", help="print the config and model card of weights",
                          description="Print the config and model card of a built-in name, local folder or Hub id.")
    info.add_argument("weights", help="built-in name, local folder or Hub id org/name[@revision]")
    info.add_argument("--revision", help="Hub branch, tag or commit")
    info.add_argument("--local-files-only", action="store_true", help="use the Hub cache only")
    info.set_defaults(func=_info)

    synth = sub.add_parser(
        "synth",
        help="write a SynthFaces dataset: rendered faces with every factor and ground-truth map",
        description="Render SynthFaces video clips and write OUT/<split>/<identity>/<clip>/<frame>.png with the "
        "ground truth beside each frame (.npz: depth, canonical depth, normals, masks, albedo, factors) and "
        "OUT/manifest.json. The same seed gives the same bytes; splits have disjoint identities.",
    )
    synth.add_argument("output", metavar="OUT", help="output folder")
    synth.add_argument("--identities", type=_positive_int, required=True, metavar="N", help="identities per split")
    synth.add_argument("--clips-per-identity", type=_positive_int, default=1, metavar="K", help="clips per identity")
    synth.add_argument("--frames", type=_positive_int, default=1, metavar="F", help="frames per clip (1: images)")
    synth.add_argument("--size", type=_image_size, default=64, help="image size, 64 * 2**k (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    synth.add_argument("--split", nargs="+", choices=SPLITS, default=["train"], help="splits to write (default train)")
    synth.add_argument("--batch-size", type=_positive_int, default=128, help="frames rendered at once")
    synth.add_argument("--overwrite", action="store_true", help="write into an existing non-empty folder")
    synth.set_defaults(func=_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "convert" and args.unsup3d is None and args.rdm is None:
        parser.error("convert needs --unsup3d and/or --rdm")
    try:
        return args.func(args)
    except (LatentFaceError, OSError) as err:
        print(f"latentface {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

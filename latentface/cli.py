"""The `latentface` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from latentface.data.synthfaces.factors import SPLITS
from latentface.errors import LatentFaceError
from latentface.options import ENCODE_OUTPUT_SUFFIXES, ENCODE_PROTOCOLS
from latentface.preprocess.images import MIN_IMAGE_SIDE

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def _convert(args: argparse.Namespace) -> int:
    from latentface.convert import convert_checkpoints

    out = convert_checkpoints(args.output, unsup3d=args.unsup3d, rdm=args.rdm, overwrite=args.overwrite)
    print(f"wrote {out} (load with LatentFace.from_pretrained({str(out)!r}))")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from latentface import hub

    folder = hub.resolve(args.weights, revision=args.revision, local_files_only=args.local_files_only)
    print(f"# weights folder: {folder}\n")
    print(hub.load_model_config(folder).to_json())
    card = hub.read_card(folder)
    print(card if card is not None else "(no model card)")
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    from latentface import pretrained

    if args.list:
        rows = pretrained.list_pretrained(cache_dir=args.cache_dir)
        width = max(len(r.name) for r in rows)
        print(f"{'name':<{width}}  {'kind':<8}  cached  description")
        for r in rows:
            print(f"{r.name:<{width}}  {r.kind:<8}  {'yes' if r.cached else 'no':<6}  {r.description}")
        print(f"\ncache: {pretrained.cache_root(args.cache_dir)}")
        return EXIT_OK
    folder = pretrained.download(args.name, source=args.source, sha256=args.sha256, cache_dir=args.cache_dir,
                                 force=args.force, progress=args.progress and sys.stderr.isatty())
    print(f"{args.name}: {folder} (load with LatentFace.from_pretrained({args.name!r}))")
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


EXIT_NOTHING_DONE = 3
"""`reconstruct`, `encode`: nothing was done (no input matched, or no model or detector could be loaded; for
`reconstruct` also: every input failed — `encode` then still writes its table of statuses and exits 1)."""


def _reconstruct(args: argparse.Namespace) -> int:
    import torch

    from latentface import LatentFace
    from latentface.reconstruct import InputRecord, write_reconstructions

    def fail(message: str) -> int:
        print(f"latentface reconstruct: error: {message}", file=sys.stderr)
        return EXIT_NOTHING_DONE

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    detector = None
    if args.detect:
        try:
            from latentface.preprocess.faces import FaceDetector

            detector = FaceDetector(device=device, crop="unsup3d", select="all" if args.all_faces else "largest")
        except (ImportError, RuntimeError) as err:
            return fail(f"--detect: {err}")
    try:
        model = LatentFace.from_pretrained(args.weights, local_files_only=args.local_files_only, device=device)
    except (LatentFaceError, RuntimeError) as err:
        return fail(str(err))

    def report(record: InputRecord) -> None:
        if record.status == "error":
            print(f"latentface reconstruct: skipped {record.input}: {record.error}", file=sys.stderr)

    try:
        result = write_reconstructions(
            model, args.inputs, args.output, mesh=not args.no_mesh,
            animation=None if args.animation_format == "none" else args.animation_format, frames=args.frames,
            batch_size=args.batch_size, overwrite=args.overwrite, detector=detector, all_faces=args.all_faces,
            on_record=report,
        )
    except OSError as err:  # the output folder or the summary cannot be written
        return fail(str(err))
    done, current, failed = (result.count(s) for s in ("done", "up-to-date", "error"))
    print(f"reconstructed {done} faces into {args.output} ({current} already up to date, {failed} skipped); "
          f"summary: {result.summary}")
    if done + current == 0:
        return EXIT_NOTHING_DONE
    return EXIT_ERROR if failed else EXIT_OK


def _on_main_process(fn: Callable[[], T], state: Any) -> T:
    """Run `fn` on the main process only and give its result, or the error it raised, to every process."""
    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            outcome = [(True, fn())]
        except (LatentFaceError, ImportError, OSError, ValueError, RuntimeError) as err:
            outcome = [(False, err)]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome)
    done, value = outcome[0]
    if not done:
        raise value
    return value


ENCODE_SHOWN_SKIPS = 20
"""`encode`: at most this many skipped inputs are named on stderr (all are in the output's status array)."""

ENCODE_EPILOG = """exit status:
  0  every input was encoded
  1  some inputs were skipped (named on stderr; their rows are NaN and their status says why); output written
  2  usage error
  3  nothing was done: no input matched, the weights or the face detector could not be loaded, the output
     could not be written, or another run is writing it (a lock file .OUT.lock beside it; Unix)
143  under `accelerate launch`: the launcher died, so this worker stopped (its finished batches are kept)"""


def _encode(args: argparse.Namespace) -> int:
    from latentface import LatentFace
    from latentface.extract import encode_records, process_state
    from latentface.face_records import InputRows, detect_rows
    from latentface.inputs import expand_inputs
    from latentface.launched import watch_launcher
    from latentface.output_lock import OutputLock

    state = process_state()  # under `accelerate launch` every process runs this; only the main one reports
    if state.num_processes > 1:
        watch_launcher()  # a worker whose launcher was killed stops instead of writing on

    def say(message: str) -> None:
        if state.is_main_process:
            print(f"latentface encode: {message}", file=sys.stderr)

    def fail(message: str) -> int:
        say(f"error: {message}")
        return EXIT_NOTHING_DONE

    found = expand_inputs(args.inputs)
    for spec, reason in found.problems:
        say(f"skipped input {spec}: {reason}")
    if not found.files:
        return fail("no input matched: " + " ".join(args.inputs))
    device = args.device or state.device
    progress = args.progress and sys.stderr.isatty()
    lock = OutputLock(args.output)
    try:
        _on_main_process(lock.acquire, state)  # every process learns whether another run is writing the output
        model = LatentFace.from_pretrained(args.weights, local_files_only=args.local_files_only, device=device)
        if args.detect:
            def detect() -> InputRows:
                from latentface.preprocess.faces import FaceDetector

                select = "all" if args.all_faces else "largest"
                detector = FaceDetector(device=str(device), crop="unsup3d", select=select)
                return detect_rows(found.files, detector, all_faces=args.all_faces, progress=progress)

            rows = _on_main_process(detect, state)  # one detection pass; every process encodes the same rows
        else:
            rows = InputRows.from_paths(found.files)
        faces = rows.faces if args.detect else None
        result = encode_records(
            model, rows.records, args.output, protocol=args.protocol, batch_size=args.batch_size, seed=args.seed,
            flip=args.flip, names=rows.names, skip=rows.skip, min_side=args.min_side, faces=faces,
            weights_name=args.weights, workers=args.workers, progress=progress,
        )
    except (LatentFaceError, ImportError, OSError, ValueError, RuntimeError) as err:
        return fail(str(err))
    finally:
        lock.release()
    skipped = result.skipped
    for name, reason in skipped[:ENCODE_SHOWN_SKIPS]:
        say(f"skipped {name}: {reason}")
    if len(skipped) > ENCODE_SHOWN_SKIPS:
        say(f"... and {len(skipped) - ENCODE_SHOWN_SKIPS} more skipped (see the status array)")
    if state.is_main_process:
        done = "up to date, nothing to do" if result.reused else "written"
        print(f"{result.num_ok} encoded, {len(skipped) + len(found.problems)} skipped; {result.path} {done}")
    return EXIT_ERROR if skipped or found.problems else EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _min_side(text: str) -> int:
    value = int(text)
    if value < MIN_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGE_SIDE} (images under {MIN_IMAGE_SIDE} px are "
                                         f"refused everywhere), got {text}")
    return value


def _device(text: str) -> str:
    import torch

    try:
        torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from err
    return text


def _image_size(text: str) -> int:
    value = int(text)
    if value < 64 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be 64 * 2**k (64, 128, 256, ...), got {text}")
    return value


def _add_model_io(parser: argparse.ArgumentParser, output_metavar: str, output_help: str) -> None:
    """The inputs, output, weights and device arguments shared by the commands that run a model."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image file, folder (recursive), glob pattern (quoted) or @list.txt (one input a line)")
    parser.add_argument("-o", "--output", required=True, metavar=output_metavar, help=output_help)
    parser.add_argument("--weights", default="synthfaces-tiny", metavar="NAME|HUB-ID|DIR",
                        help="bundled or registered name (latentface download --list), Hub id org/name[@revision] or "
                        "local folder (default synthfaces-tiny)")
    parser.add_argument("--local-files-only", action="store_true", help="use the Hub cache only")
    parser.add_argument("--device", type=_device, help="torch device (default: cuda if available, else cpu)")


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

    download = sub.add_parser(
        "download",
        help="download, check, convert and cache registered weights (or list them)",
        description="Fetch registered weights once: the file is downloaded (resuming an interrupted download; "
        "LATENTFACE_DOWNLOAD_MIRROR=<base URL> replaces the origin, HF_HUB_OFFLINE=1 forbids it), checked, converted "
        "and cached; later loads by name are offline. --list shows every name and whether it is cached.",
    )
    download.add_argument("name", nargs="?", help="registered name, e.g. unsup3d-celeba")
    download.add_argument("--list", action="store_true", help="list bundled and registered weights, with cache state")
    download.add_argument("--from", dest="source", metavar="PATH|URL",
                          help="the file, for names without a download URL (latentface-official: diffusion_64.pth)")
    download.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the downloaded file")
    download.add_argument("--cache-dir", metavar="DIR", help="cache folder (default $LATENTFACE_CACHE or "
                          "~/.cache/latentface)")
    download.add_argument("--force", action="store_true", help="download and convert again even when cached")
    download.add_argument("--no-progress", dest="progress", action="store_false",
                          help="no progress bar (it is shown on stderr when that is a terminal)")
    download.set_defaults(func=_download)

    info = sub.add_parser("info", help="print the config and model card of weights",
                          description="Print the config and model card of a bundled or registered name, local "
                          "folder or Hub id (registered weights are downloaded first if needed).")
    info.add_argument("weights", help="bundled or registered name, local folder or Hub id org/name[@revision]")
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

    reconstruct = sub.add_parser(
        "reconstruct",
        help="write a reconstruction sheet, textured mesh and turntable animation of every face image",
        description="For every input face write DIR/<name>.png (input, albedo, depth, normals, shading, "
        "reconstruction, frontal view, relit views), DIR/<name>.obj (+ .mtl, .albedo.png texture) and a turntable "
        "animation, plus DIR/reconstruct.json with the status of every input. Faces whose outputs exist are "
        "skipped. Exit status: 0 all done, 1 some inputs skipped (bad or unreadable), 2 usage, 3 nothing done.",
    )
    _add_model_io(reconstruct, "DIR", "output folder")
    reconstruct.add_argument("--batch-size", type=_positive_int, default=8, help="faces rendered at once (default 8)")
    reconstruct.add_argument("--detect", action="store_true",
                             help="crop each image to its largest detected face (needs the [face] extra)")
    reconstruct.add_argument("--all-faces", action="store_true",
                             help="with --detect: every face, recorded as PATH#k with files named <name>-face<k> "
                             "(k = 0, 1, ..., largest first)")
    reconstruct.add_argument("--no-mesh", action="store_true", help="do not write the .obj mesh")
    reconstruct.add_argument("--animation-format", choices=("gif", "webp", "apng", "none"), default="gif",
                             help="turntable format (default gif; apng is written as <name>.turntable.png)")
    reconstruct.add_argument("--frames", type=_positive_int, default=24, help="turntable frames (default 24)")
    reconstruct.add_argument("--overwrite", action="store_true", help="redo faces whose outputs exist")
    reconstruct.set_defaults(func=_reconstruct)

    encode = sub.add_parser(
        "encode",
        help="encode face images to features or codes (.npz or .parquet), resumably",
        description="Encode every input image to the released FER or verification features, or to all codes\n"
        "(texture, shape, light, pose and their identity/expression parts), in one table: files, status, the\n"
        "arrays and JSON metadata; with --detect also each row's face_box, crop_box and face_confidence. Unreadable\n"
        "inputs get NaN rows and a status saying why. Finished batches are\n"
        "kept beside the output, so an interrupted run resumes; a run whose output is up to date does nothing.\n"
        "Under `accelerate launch` the batches are shared between the processes.",
        epilog=ENCODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_io(encode, "OUT", f"output file, {' or '.join(ENCODE_OUTPUT_SUFFIXES)}")
    encode.add_argument("--protocol", choices=ENCODE_PROTOCOLS, default="fer",
                        help="fer: 4 x latent features; verification: twice that, with the flip; codes: every code "
                        "(default fer)")
    encode.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch (default 64)")
    encode.add_argument("--seed", type=int, default=0, help="seed of the diffusion noise (default 0)")
    encode.add_argument("--flip", action="store_true", help="encode the horizontally mirrored images")
    encode.add_argument("--detect", action="store_true",
                        help="crop each image to its largest detected face (Unsup3D crop; needs the [face] extra)")
    encode.add_argument("--all-faces", action="store_true",
                        help="with --detect: every face, one row each, named PATH#k (k = 0, 1, ..., largest first)")
    encode.add_argument("--min-side", type=_min_side, default=MIN_IMAGE_SIDE,
                        help=f"skip images or face boxes with a shorter side (default and least {MIN_IMAGE_SIDE} px, "
                        "the rule of every entry point)")
    encode.add_argument("--workers", type=_non_negative_int, default=None, metavar="N",
                        help="processes that decode the images while the model runs (0: none, decode in the "
                        "encoding process; default: usable CPUs per encoding process minus one, at most 8, and 0 "
                        "under 4 CPUs per process); the output is the same for every N")
    encode.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (it is shown on stderr when that is a terminal)")
    encode.set_defaults(func=_encode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 some inputs failed, 2 usage, 3 nothing done)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "convert" and args.unsup3d is None and args.rdm is None:
        parser.error("convert needs --unsup3d and/or --rdm")
    if args.command == "download" and (args.name is None) == (not args.list):
        parser.error("download needs a NAME, or --list")
    if args.command in ("encode", "reconstruct") and args.all_faces and not args.detect:
        parser.error(f"{args.command}: --all-faces needs --detect")
    if args.command == "encode" and not args.output.endswith(ENCODE_OUTPUT_SUFFIXES):
        parser.error(f"encode: the output must end with {' or '.join(ENCODE_OUTPUT_SUFFIXES)}, got {args.output!r}")
    try:
        return args.func(args)
    except (LatentFaceError, OSError) as err:
        print(f"latentface {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

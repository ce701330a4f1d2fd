"""End-to-end speed of `latentface encode`: files on disk to a written table, with and without face detection,
and on JPEG photos with 0 to N decoding workers.

    python benchmarks/encode_speed.py                       # 256 SynthFaces PNGs, bundled weights, CPU
    python benchmarks/encode_speed.py --device cuda --images 2048 --batch-size 256
    python benchmarks/encode_speed.py --canvas 640          # detection on faces pasted into 640 x 480 photos
    python benchmarks/encode_speed.py --jpeg-images 2048 --workers 0 4 8 15   # JPEG decoding workers

The images are SynthFaces test renders written as PNG files to a temporary folder: at the model's size for the
plain runs, and pasted at a random place into a larger noisy canvas (``--canvas`` wide, 4:3) for the
``--detect`` run, so that detection searches a photo-sized image. Each run is the command itself, in this process
(`latentface.cli.main`): loading the weights (and MTCNN), listing and decoding the files, detection, the model,
and writing the ``.npz``
atomically; the output is removed between repeats so that nothing is reused. Python and torch start-up are not
counted (about 2 s per command), nor a first warm-up run per point. Reported: images/s (images given, over the
median of ``--repeats`` runs) per protocol, with and without ``--detect`` (skipped without facenet-pytorch), and
how many were encoded (detection may miss a face). JSON to ``--output``, markdown to stdout.

The JPEG runs (``--jpeg-images``, 0 to skip) time the same command on ``--jpeg-size`` square photos saved as JPEG
(quality 90: a SynthFaces face enlarged onto a smooth, grainy background), where decoding and resizing each file
costs more than the model, once per ``--workers`` count (default: 0 to `default_workers`, at least 0 and 1;
0 decodes in the encoding process, as before decoding workers existed). They are reported under ``jpeg`` in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
from harness import load_model, publish, reports_errors, run
from PIL import Image

from latentface.cli import main as cli_main
from latentface.data.synthfaces import SynthFacesImages
from latentface.errors import WeightsError
from latentface.extract import OK, default_workers, load_output
from latentface.options import ENCODE_PROTOCOLS

JPEG_QUALITY = 90


def write_images(folder: Path, count: int, canvas: int | None, seed: int) -> None:
    """SynthFaces test renders as PNG files, optionally pasted into a noisy canvas of width `canvas` (3:4)."""
    faces = SynthFacesImages(count, split="test", seed=seed).batch(list(range(count))).image
    pixels = (faces.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(pixels):
        image = Image.fromarray(face)
        if canvas is not None:
            size = canvas // 4  # a face a quarter of the photo's width, as in a portrait
            height = canvas * 3 // 4
            background = rng.integers(0, 256, (height, canvas, 3), dtype=np.uint8)
            photo = Image.fromarray(background)
            photo.paste(image.resize((size, size), Image.Resampling.BILINEAR),
                        (int(rng.integers(0, canvas - size)), int(rng.integers(0, height - size))))
            image = photo
        image.save(folder / f"{i:05d}.png")


def write_jpeg_photos(folder: Path, count: int, size: int, seed: int) -> None:
    """`count` photos of `size` px, JPEG quality `JPEG_QUALITY`: a SynthFaces test face enlarged to 3/4 of the
    photo, at a random place on a smooth random background with a little grain."""
    faces = SynthFacesImages(count, split="test", seed=seed).batch(list(range(count))).image
    pixels = (faces.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    face_side = size * 3 // 4
    for i, face in enumerate(pixels):
        blobs = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        photo = blobs.resize((size, size), Image.Resampling.BICUBIC)
        photo.paste(Image.fromarray(face).resize((face_side, face_side), Image.Resampling.BICUBIC),
                    (int(rng.integers(0, size - face_side + 1)), int(rng.integers(0, size - face_side + 1))))
        grain = rng.normal(0, 4, (size, size, 3))
        noisy = np.clip(np.asarray(photo, dtype=np.float64) + grain, 0, 255).round().astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:05d}.jpg", quality=JPEG_QUALITY)


def time_command(argv: list[str], output: Path, repeats: int) -> list[float]:
    """Seconds of each of `repeats` runs of the command after one untimed warm-up run (the output is deleted
    before each run; the command's own messages are swallowed)."""
    seconds = []
    for _ in range(repeats + 1):
        output.unlink(missing_ok=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = cli_main(argv)
        seconds.append(time.perf_counter() - start)
        if code not in (0, 1):
            raise RuntimeError(f"latentface {' '.join(argv)} failed with exit code {code}: {err.getvalue()[-2000:]}")
    return seconds[1:]


def detector_available() -> bool:
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    harness.add_model_options(p, device="cpu")
    p.add_argument("--images", type=int, default=256, help="images per run")
    p.add_argument("--detect-images", type=int, default=64, help="images per --detect run (0: skip detection)")
    p.add_argument("--canvas", type=int, default=640, help="width of the photos the --detect run searches")
    p.add_argument("--batch-size", type=int, default=64, help="encode batch size")
    p.add_argument("--protocols", nargs="+", choices=ENCODE_PROTOCOLS, default=list(ENCODE_PROTOCOLS),
                   help="protocols to time")
    p.add_argument("--jpeg-images", type=int, default=512, help="JPEG photos per workers run (0: skip them)")
    p.add_argument("--jpeg-size", type=int, default=256, help="side of the JPEG photos in pixels")
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="decoding worker counts of the JPEG runs (default: 0 to the encoder's default, at least 0 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per point (the median is reported)")
    p.add_argument("--seed", type=int, default=0, help="SynthFaces seed")
    harness.add_run_options(p, "encode-speed")
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.repeats, args.canvas) < 1 or args.detect_images < 0:
        p.error("--images, --batch-size, --repeats and --canvas must be positive, --detect-images >= 0")
    if args.jpeg_images < 0 or args.jpeg_size < 16 or min(args.workers or [0]) < 0:
        p.error("--jpeg-images and --workers must be >= 0, --jpeg-size >= 16")
    args.workers = args.workers or list(range(max(1, default_workers()) + 1))
    return args


@reports_errors(WeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    found = harness.select_devices([args.device], args.threads)
    model = harness.model_record(load_model(args.weights, found[0]))  # the weights every run loads
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root / "faces", args.images, None, args.seed)
        runs = [(protocol, False, root / "faces", args.images) for protocol in args.protocols]
        if args.detect_images and detector_available():
            write_images(root / "photos", args.detect_images, args.canvas, args.seed)
            runs.append(("fer", True, root / "photos", args.detect_images))
        elif args.detect_images:
            print("facenet-pytorch is not installed: the --detect run is skipped", file=sys.stderr)
        for protocol, detect, folder, count in runs:
            out = root / f"{protocol}-{detect}.npz"
            argv_run = ["encode", str(folder), "-o", str(out), "--weights", args.weights, "--device", args.device,
                        "--batch-size", str(args.batch_size), "--protocol", protocol, "--no-progress"]
            argv_run += ["--detect"] if detect else []
            seconds = time_command(argv_run, out, args.repeats)
            median = statistics.median(seconds)
            encoded = int((load_output(out)[0]["status"] == OK).sum())
            results.append({"protocol": protocol, "detect": detect, "images": count, "encoded": encoded,
                            "input": f"{args.canvas} x {args.canvas * 3 // 4} photos" if detect else "model-size PNGs",
                            "seconds": seconds, "images_per_s": count / median})
        jpeg = time_jpeg_workers(args, root) if args.jpeg_images else None
    report = {"benchmark": "encode_speed", "machine": harness.machine_info(found), "settings": vars(args) | {
        "output": str(args.output)}, "model": model, "results": results, "jpeg": jpeg}
    report["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


def time_jpeg_workers(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Time the first protocol on `args.jpeg_images` JPEG photos once per worker count of `args.workers`.

    Args:
        args: the parsed options.
        root: a scratch folder.

    Returns:
        The photos' description and one run (``workers``, ``encoded``, ``seconds``, ``images_per_s``) per count.
    """
    folder = root / "jpeg"
    write_jpeg_photos(folder, args.jpeg_images, args.jpeg_size, args.seed)
    protocol = args.protocols[0]
    runs = []
    for workers in args.workers:
        out = root / f"jpeg-{workers}.npz"
        argv = ["encode", str(folder), "-o", str(out), "--weights", args.weights, "--device", args.device,
                "--batch-size", str(args.batch_size), "--protocol", protocol, "--workers", str(workers),
                "--no-progress"]
        seconds = time_command(argv, out, args.repeats)
        encoded = int((load_output(out)[0]["status"] == OK).sum())
        runs.append({"workers": workers, "encoded": encoded, "seconds": seconds,
                     "images_per_s": args.jpeg_images / statistics.median(seconds)})
    return {"protocol": protocol, "images": args.jpeg_images,
            "input": f"{args.jpeg_size} x {args.jpeg_size} JPEG photos (quality {JPEG_QUALITY})", "runs": runs}


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    where = m["gpu"] or f"{m['cpu_model']}, {m['cpu_usable']} CPUs, {m['torch_threads']} torch threads"
    lines = [f"**Machine**: {where}; weights {s['weights']}, batch {s['batch_size']}, median of {s['repeats']} runs.",
             "", "| protocol | --detect | input | images | encoded | images/s |", "|---|---|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['protocol']} | {'yes' if r['detect'] else 'no'} | {r['input']} | {r['images']} | "
                     f"{r['encoded']} | {r['images_per_s']:.1f} |")
    jpeg = report.get("jpeg")
    if jpeg:
        lines += ["", f"{jpeg['images']} {jpeg['input']}, protocol {jpeg['protocol']}:", "",
                  "| --workers | encoded | images/s |", "|---:|---:|---:|"]
        lines += [f"| {r['workers']} | {r['encoded']} | {r['images_per_s']:.1f} |" for r in jpeg["runs"]]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)

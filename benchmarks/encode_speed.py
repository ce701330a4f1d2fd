"""End-to-end speed of `latentface encode`: files on disk to a written table, with and without face detection.

    python benchmarks/encode_speed.py                       # 256 SynthFaces PNGs, bundled weights, CPU
    python benchmarks/encode_speed.py --device cuda --images 2048 --batch-size 256
    python benchmarks/encode_speed.py --canvas 640          # detection on faces pasted into 640 x 480 photos

The images are SynthFaces test renders written as PNG files to a temporary folder: at the model's size for the
plain runs, and pasted at a random place into a larger noisy canvas (``--canvas`` wide, 4:3) for the
``--detect`` run, so that detection searches a photo-sized image. Each run is the command itself, in this process
(`latentface.cli.main`): loading the weights (and MTCNN), listing and decoding the files, detection, the model,
and writing the ``.npz``
atomically; the output is removed between repeats so that nothing is reused. Python and torch start-up are not
counted (about 2 s per command), nor a first warm-up run per point. Reported: images/s (images given, over the
median of ``--repeats`` runs) per protocol, with and without ``--detect`` (skipped without facenet-pytorch), and
how many were encoded (detection may miss a face). JSON to ``--output``, markdown to stdout.
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
from latentface.extract import OK, load_output

PROTOCOLS = ("fer", "verification", "codes")


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
    p.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS), help="protocols to time")
    p.add_argument("--repeats", type=int, default=3, help="runs per point (the median is reported)")
    p.add_argument("--seed", type=int, default=0, help="SynthFaces seed")
    harness.add_run_options(p, "encode-speed")
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.repeats, args.canvas) < 1 or args.detect_images < 0:
        p.error("--images, --batch-size, --repeats and --canvas must be positive, --detect-images >= 0")
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
    report = {"benchmark": "encode_speed", "machine": harness.machine_info(found), "settings": vars(args) | {
        "output": str(args.output)}, "model": model, "results": results}
    report["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    where = m["gpu"] or f"{m['cpu_model']}, {m['cpu_usable']} CPUs, {m['torch_threads']} torch threads"
    lines = [f"**Machine**: {where}; weights {s['weights']}, batch {s['batch_size']}, median of {s['repeats']} runs.",
             "", "| protocol | --detect | input | images | encoded | images/s |", "|---|---|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['protocol']} | {'yes' if r['detect'] else 'no'} | {r['input']} | {r['images']} | "
                     f"{r['encoded']} | {r['images_per_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)

"""The shared harness of the benchmark scripts: one argument, run and report skeleton.

A script builds its parser with `new_parser` and the shared options (`add_model_options`: ``--weights`` and
``--device``; `add_run_options`: ``--threads``, ``--output`` defaulting to `result_path`, ``--no-progress``), picks
its devices with `select_devices`, raises `ScriptError` (or a library error listed in `reports_errors`) where it
cannot go on, records the weights it measured with `model_record`, ends with `publish`, and runs as
``if __name__ == "__main__": run(main)``. Also here: the machine description, the timing loop and atomic JSON output.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

import latentface
from latentface import LatentFace
from latentface.errors import WeightsError
from latentface.fileio import write_atomic
from latentface.hub import weights_digest

RESULTS = Path(__file__).resolve().parent / "results"
"""Where the reports go by default (`result_path`) and where the committed ones live."""

Main = Callable[[Sequence[str] | None], int]
"""A script's entry point: command-line arguments (None: ``sys.argv[1:]``) -> exit status."""


class ScriptError(Exception):
    """A benchmark cannot run as asked; `reports_errors` prints ``error: <message>`` and the script exits with 2."""


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to `platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(devices: Sequence[torch.device]) -> dict[str, Any]:
    """Description of this machine and software stack (GPU fields set when a CUDA device is among `devices`)."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "latentface": latentface.__version__,
        "gpu": None,
        "cuda": None,
    }
    if any(d.type == "cuda" for d in devices):
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def measure(fn: Callable[[], object], device: torch.device, batch: int, min_time: float,
            warmup_time: float) -> dict[str, float]:
    """Warm `fn` up (one call at least, then until `warmup_time`), then time calls until `min_time` has passed.

    Throughput is the batch size over the median call time (robust to the odd stall of a shared machine).
    """
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    fn()
    sync()
    while time.perf_counter() - start < warmup_time:
        fn()
        sync()
    times: list[float] = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"images_per_s": batch / median, "ms_per_batch_median": 1000 * median,
            "ms_per_batch_mean": 1000 * statistics.fmean(times), "calls": len(times), "seconds": sum(times)}


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Disable TF32 (CUDA convolutions use it by default) so that equivalence checks compare exact fp32."""
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON, atomically."""
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text explains a computed default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default:" in text else super()._get_help_string(action)


def publish(report: dict[str, Any], table: str, output: Path) -> None:
    """Write the JSON report atomically and print the markdown table with where the report went."""
    write_json_atomic(output, report)
    print(table)
    print(f"\nResults written to {output} (total {report['total_seconds']:.0f} s)")


def load_model(name: str, device: torch.device) -> LatentFace:
    """`LatentFace.from_pretrained`, with the weights' name in the error message."""
    try:
        return LatentFace.from_pretrained(name, device=device)
    except WeightsError as err:
        raise WeightsError(f"cannot load weights {name!r}: {err} (pass --weights: a built-in name, a weights folder "
                           "such as the final/ folder of a training run, or a Hub id)") from err


def finite(x: float) -> float | None:
    """`x`, or None (JSON null) when it is NaN or infinite."""
    return x if math.isfinite(x) else None


def select_devices(names: Sequence[str], threads: int | None) -> list[torch.device]:
    """The requested devices; sets the torch CPU threads first.

    Args:
        names: device names (``cpu``, ``cuda``, ``cuda:1``, ...).
        threads: torch CPU threads, or None for torch's choice.

    Returns:
        The devices, in the order given.

    Raises:
        ScriptError: a CUDA device is asked for but CUDA is not available.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    found = [torch.device(d) for d in names]
    if any(d.type == "cuda" for d in found) and not torch.cuda.is_available():
        raise ScriptError("CUDA requested but not available")
    return found


def default_device() -> str:
    """``cuda`` when CUDA is available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def new_parser(doc: str | None, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of a benchmark script.

    Args:
        doc: the script's module docstring; its first paragraph is the description.
        epilog: text after the options.

    Returns:
        An `argparse.ArgumentParser` that shows the defaults (`HelpFormatter`).
    """
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0], epilog=epilog,
                                   formatter_class=HelpFormatter)


def result_path(stem: str) -> Path:
    """Default JSON report of a run on this machine: ``benchmarks/results/<stem>-<host>.json``.

    Args:
        stem: the benchmark's name with its variant (``fer-rafdb-released``, ``speed``, ...).

    Returns:
        The path.
    """
    return RESULTS / f"{stem}-{socket.gethostname()}.json"


def add_model_options(parser: argparse.ArgumentParser, *, weights: str | None = "synthfaces-tiny",
                      device: str | None = None, device_help: str | None = None) -> None:
    """Add ``--weights`` (unless `weights` is None) and ``--device``, one device.

    Args:
        parser: the script's parser.
        weights: default weights (a built-in name, folder or Hub id); None: the script has no ``--weights``.
        device: default device; None: `default_device`.
        device_help: help text of ``--device`` (default: the default device explained).
    """
    if weights is not None:
        parser.add_argument("--weights", default=weights, help="weights: built-in name, local folder or Hub id")
    parser.add_argument("--device", default=device or default_device(),
                        help=device_help or ("torch device" if device else
                                             "device (default: cuda when available, else cpu)"))


def add_devices_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` taking several devices, by default the CPU and CUDA when available.

    Args:
        parser: the script's parser.
    """
    default = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--device", nargs="+", default=default, help="devices (cpu, cuda, cuda:1, ...)")


def add_run_options(parser: argparse.ArgumentParser, stem: str | None, *, output_help: str | None = None,
                    progress: bool = False) -> None:
    """Add ``--threads``, ``--output`` and, with `progress`, ``--no-progress``.

    Args:
        parser: the script's parser.
        stem: default report `result_path(stem)`; None: ``--output`` defaults to None (the script decides).
        output_help: help text of ``--output`` (default: "JSON results file").
        progress: the script shows progress bars that ``--no-progress`` turns off.
    """
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None if stem is None else result_path(stem),
                        help=output_help or "JSON results file")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def reports_errors(*errors: type[Exception]) -> Callable[[Main], Main]:
    """Decorate a script's ``main``: `ScriptError` and the `errors` given print ``error: <message>`` and return 2.

    Args:
        errors: further exception types that mean the inputs cannot be used (e.g. `WeightsError`).

    Returns:
        The decorator.
    """
    caught = (ScriptError, *errors)

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except caught as err:
                print(f"error: {err}", file=sys.stderr)
                return 2

        return wrapped

    return decorate


def run(main: Main) -> NoReturn:
    """Run a script's ``main`` on the command line and exit with its status.

    Args:
        main: the entry point.
    """
    sys.exit(main(None))


def model_record(model: LatentFace, **extra: Any) -> dict[str, Any]:
    """What a report records of the weights it measured.

    Args:
        model: the measured model.
        extra: further entries (e.g. ``feature_dim``).

    Returns:
        ``config``, ``has_rdm`` and ``weights_sha256`` (`latentface.hub.weights_digest`: configuration and every
        tensor), then `extra`.
    """
    return {"config": model.config.to_dict(), "has_rdm": model.config.has_rdm,
            "weights_sha256": weights_digest(model), **extra}

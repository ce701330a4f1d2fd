"""Shared pieces of the benchmark scripts: machine description, timing loop, atomic JSON output."""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any

import torch

import latentface
from latentface import LatentFace
from latentface.errors import WeightsError
from latentface.fileio import write_atomic


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


def devices(names: Sequence[str], threads: int | None) -> list[torch.device] | None:
    """The requested devices (None, with a message, when CUDA is asked for but missing); sets the CPU threads."""
    if threads is not None:
        torch.set_num_threads(threads)
    found = [torch.device(d) for d in names]
    if any(d.type == "cuda" for d in found) and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return None
    return found

"""One prepared run on a GPU machine: correctness and every speed figure a GPU user cares about, in one folder.

    python benchmarks/gpu_check.py                             # on the GPU machine, about 8 minutes
    python benchmarks/gpu_check.py --wheels wheels/            # missing dependencies from local wheels (no network)
    python benchmarks/gpu_check.py --steps speed_compile train --budget 300     # only some steps
    python benchmarks/gpu_check.py --dry-run --out /tmp/check  # the same steps on the CPU at tiny sizes

Steps, in this order (each but ``setup`` in its own process, so that a failing or hanging step stops no other):

  setup          the dependencies importable? Otherwise ``pip install`` them (from ``--wheels`` when given)
  cuda_tests     the tests marked ``cuda`` (skipped without CUDA), via pytest with a JUnit XML report
  equality       `benchmarks/cpu_vs_device.py`: CPU against the device for encode, disentangle and render
  speed          `benchmarks/speed.py`: batches 64-4096, float32 and bfloat16, eager, beside the released code
  render         `benchmarks/render_speed.py`: 64 and 128 meshes at 64 and 128 px, forward and forward+backward;
                 a Stage-1 step at the released widths (batch 64 and 256) with and without the perceptual term
  stage2         `benchmarks/stage2_speed.py`: Stage-2 steps on cached latents
  speed_compile  `benchmarks/speed.py --compile inductor`, both dtypes
  train          a short SynthFaces Stage-1 run (`benchmarks/train.py`); its weights are copied to ``train/``

Every step respects a global time budget (``--budget``, default 480 s): a step gets at most what is left (and its
own cap), is skipped when too little is left, and a step that runs out of time is stopped (the benchmark scripts
keep what they measured so far). Written to ``--out`` (default ``gpu-check-<hostname>``): ``summary.json`` and
``summary.md`` (machine, each step's status, key numbers and tables, the targets checked), each step's JSON
report, ``cuda-tests.xml``, ``logs/<step>.log`` and ``train/``. The summary is rewritten after every step.

``--dry-run`` runs the same steps on the CPU at tiny sizes (one thread, tiny batches and timings, two training
steps, compiled with the ``eager`` backend in float32 only instead of ``inductor``) in about a minute: it keeps
the script working where no GPU is.

Exit status: 0 when no step failed, 1 otherwise, 2 when the device is missing.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent

REQUIREMENTS = {
    "numpy": "numpy>=1.24", "PIL": "pillow>=10.1", "timm": "timm>=1.0", "huggingface_hub": "huggingface-hub>=1.0,<3",
    "accelerate": "accelerate>=0.30", "safetensors": "safetensors>=0.4", "tqdm": "tqdm>=4.60",
    "pytest": "pytest>=8", "diffusers": "diffusers>=0.30",
}
"""Module -> requirement (as in pyproject.toml) of what the steps import besides torch, which must be present."""
if sys.version_info < (3, 11):
    REQUIREMENTS["tomli"] = "tomli>=2"
SETUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class Profile:
    """Sizes of one kind of run: the real one on a GPU, or the dry run on the CPU."""

    device: str
    speed_batches: tuple[int, ...]
    min_time: float
    compile_backend: str
    compile_dtypes: tuple[str, ...]
    render_sizes: tuple[int, ...]
    render_batches: tuple[int, ...]
    step_batches: tuple[int, ...]
    stage2_batches: tuple[int, ...]
    clip_length: int
    equality_batch: int
    train_overrides: tuple[str, ...]
    renderer_target: tuple[int, int]
    """(size, meshes) where the renderer's forward+backward time is checked."""
    caps: dict[str, float] = field(default_factory=dict)
    """Most seconds per step (none where missing: the budget alone limits it)."""
    min_start: dict[str, float] = field(default_factory=dict)
    """A step is skipped when less than this is left of the budget."""


GPU = Profile(
    device="cuda", speed_batches=(64, 256, 1024, 4096), min_time=0.5, compile_backend="inductor",
    compile_dtypes=("float32", "bfloat16"),
    render_sizes=(64, 128), render_batches=(64, 128), step_batches=(64, 256), stage2_batches=(1, 4, 64, 256),
    clip_length=16, equality_batch=16, renderer_target=(64, 128),
    train_overrides=("optim.max_steps=300", "log_every=50", f"data.num_workers={min(8, (os.cpu_count() or 2) - 1)}"),
    caps={"cuda_tests": 120, "equality": 60, "speed": 150, "render": 120, "stage2": 60, "speed_compile": 240,
          "train": 180},
    min_start={"cuda_tests": 20, "equality": 15, "speed": 30, "render": 30, "stage2": 15, "speed_compile": 60,
               "train": 60},
)
DRY_RUN = Profile(
    device="cpu", speed_batches=(2,), min_time=0.01, compile_backend="eager",
    compile_dtypes=("float32",), render_sizes=(32,),
    render_batches=(2,), step_batches=(2,), stage2_batches=(1,), clip_length=4, equality_batch=2,
    renderer_target=(32, 2),
    train_overrides=("optim.max_steps=2", "optim.batch_size=2", "log_every=1", "data.identities=2",
                     "data.samples_per_identity=1", "data.num_workers=0"),
    min_start={name: 5 for name in ("cuda_tests", "equality", "speed", "render", "stage2", "speed_compile", "train")},
)


@dataclass
class Step:
    """One step: a command run in its own process, and what is read back from its outputs.

    Attributes:
        name: short name (file names, ``--steps``).
        description: one line for the summary.
        command: the arguments after ``python``.
        outputs: files the step writes in the results folder (removed before it runs: no stale numbers).
        collect: reads the key numbers from the results folder (may raise: the numbers are then missing).
    """

    name: str
    description: str
    command: list[str]
    outputs: list[str]
    collect: Callable[[Path], dict[str, Any]]


# ---------------------------------------------------------------- key numbers of each step


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def junit_counts(path: Path) -> dict[str, Any]:
    """Counts and outcome per test case of a pytest JUnit XML report."""
    root = ET.parse(path).getroot()
    cases = {}
    for case in root.iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        cases[f"{case.get('classname')}::{case.get('name')}"] = outcome
    counts = {k: sum(v == k for v in cases.values()) for k in ("passed", "failed", "error", "skipped")}
    return {"tests": len(cases), **counts, "cases": cases}


def _speed_key(path: Path) -> dict[str, Any]:
    """Best encode+disentangle point of a speed report, per variant and overall."""
    report = _load(path)
    rows = report["results"]
    best: dict[str, Any] = {}
    for r in rows:
        variant = f"{r['dtype']}/{r['compile']}"
        if variant not in best or r["encode_disentangle"]["images_per_s"] > best[variant]["encode_disentangle"]:
            best[variant] = {"batch": r["batch_size"], "encode": r["encode"]["images_per_s"],
                             "encode_disentangle": r["encode_disentangle"]["images_per_s"],
                             "released": r["released_encode_disentangle"]["images_per_s"],
                             "speedup_vs_released": r["speedup_vs_encode_disentangle"], "rdm_share": r["rdm_share"]}
    return {"complete": report.get("complete", False), "points": len(rows),
            "equivalence_max_abs_diff": [c["max_abs_diff"] for c in report["checks"]], "best_per_variant": best}


def _render_key(path: Path) -> dict[str, Any]:
    report = _load(path)
    points = {f"{r['backend']} {r['size']}px x{r['batch_size']}": {
        "raster_fwd_bwd_ms": r["raster_fwd_bwd"]["ms_per_batch_median"],
        "warp_fwd_bwd_ms": r["warp_fwd_bwd"]["ms_per_batch_median"]} for r in report["results"]}
    stage1 = {f"{r['backend']} perceptual={r['perceptual']} x{r['batch_size']}": {
        "images_per_s": r["step"]["images_per_s"], "renderer_share": r["share_of_step"]} for r in report["stage1"]}
    return {"complete": report["complete"], "render": points, "stage1": stage1}


def _stage2_key(path: Path) -> dict[str, Any]:
    return {f"{r['clips']} clips": {"images_per_s": r["step"]["images_per_s"],
                                    "ms_per_step": r["step"]["ms_per_batch_median"]}
            for r in _load(path)["results"]}


def _equality_key(path: Path) -> dict[str, Any]:
    results = _load(path)["results"]
    worst = max(results["max_abs_diff"], key=results["max_abs_diff"].get)
    return {"passed": results["passed"], "worst": worst, "worst_max_abs_diff": results["max_abs_diff"][worst],
            "mask_mismatch": results["mask_mismatch"], "max_abs_diff": results["max_abs_diff"]}


def _collect_train(out: Path) -> dict[str, Any]:
    """Copy the run's final weights, metrics and configuration to ``train/``; the last logged row's numbers."""
    run = out / "train-run"
    dest = out / "train"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run / "final", dest / "final")
    for name in ("metrics.csv", "config.toml"):
        shutil.copy2(run / name, dest / name)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    shutil.rmtree(run)
    return {"steps": int(last["step"]), "loss": float(last["loss"]), "images_per_s": float(last["images_per_s"]),
            "weights": str((dest / "final").relative_to(out))}


def cuda_test_files() -> list[str]:
    """The test files (relative to the repository) with a test decorated ``@pytest.mark.cuda``."""
    decorator = re.compile(r"^\s*@pytest\.mark\.cuda\b", re.M)
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if decorator.search(p.read_text(encoding="utf-8")))


def plan(profile: Profile, out: Path) -> list[Step]:
    """The steps of a run, in order."""
    py = [str(BENCHMARKS / "speed.py"), "--device", profile.device, "--min-time", str(profile.min_time),
          "--batch-sizes", *map(str, profile.speed_batches)]
    test_files = cuda_test_files()
    train = ["--config", str(BENCHMARKS / "configs" / "synthfaces_tiny_stage1.toml"), "--output-dir",
             str(out / "train-run"), "image_every=0", "checkpoint_every=0", *profile.train_overrides]
    return [
        Step("cuda_tests", f"pytest -m cuda: {', '.join(test_files) or 'no file has cuda tests'}",
             ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={out / 'cuda-tests.xml'}",
              *test_files], ["cuda-tests.xml"], lambda o: junit_counts(o / "cuda-tests.xml")),
        Step("equality", "CPU against the device: encode, disentangle (same noise), render",
             [str(BENCHMARKS / "cpu_vs_device.py"), "--device", profile.device, "--batch-size",
              str(profile.equality_batch), "--output", str(out / "equality.json")],
             ["equality.json"], lambda o: _equality_key(o / "equality.json")),
        Step("speed", "speed.py: float32 and bfloat16, eager, beside the released code",
             [*py, "--dtype", "float32", "bfloat16", "--compile", "none", "--output", str(out / "speed.json")],
             ["speed.json"], lambda o: _speed_key(o / "speed.json")),
        Step("render", "render_speed.py: renderer fwd / fwd+bwd; Stage-1 step with and without perceptual term",
             [str(BENCHMARKS / "render_speed.py"), "--device", profile.device, "--min-time", str(profile.min_time),
              "--sizes", *map(str, profile.render_sizes), "--batch-sizes", *map(str, profile.render_batches),
              "--pytorch3d-cpu-batch-sizes", str(profile.render_batches[0]),
              "--step-batch", *map(str, profile.step_batches), "--step-perceptual", "random", "none",
              "--output", str(out / "render.json")],
             ["render.json"], lambda o: _render_key(o / "render.json")),
        Step("stage2", "stage2_speed.py: Stage-2 steps on cached latents",
             [str(BENCHMARKS / "stage2_speed.py"), "--device", profile.device, "--min-time", str(profile.min_time),
              "--batch-sizes", *map(str, profile.stage2_batches), "--clip-length", str(profile.clip_length),
              "--output", str(out / "stage2.json")],
             ["stage2.json"], lambda o: _stage2_key(o / "stage2.json")),
        Step("speed_compile", f"speed.py --compile {profile.compile_backend}: {' and '.join(profile.compile_dtypes)}",
             [*py, "--dtype", *profile.compile_dtypes, "--compile", profile.compile_backend,
              "--output", str(out / "speed-compile.json")],
             ["speed-compile.json"], lambda o: _speed_key(o / "speed-compile.json")),
        Step("train", "a short SynthFaces Stage-1 run (synthfaces_tiny_stage1.toml); weights copied to train/",
             [str(BENCHMARKS / "train.py"), *train], ["train-run", "train"], _collect_train),
    ]


STEP_NAMES = ("setup", "cuda_tests", "equality", "speed", "render", "stage2", "speed_compile", "train")


# ---------------------------------------------------------------- running


def missing_modules() -> list[str]:
    """The modules of `REQUIREMENTS` that cannot be imported."""
    importlib.invalidate_caches()
    return [name for name in REQUIREMENTS if importlib.util.find_spec(name) is None]


def pip_command(missing: Sequence[str], wheels: Path | None) -> list[str]:
    """``pip install`` of the requirements of the `missing` modules, from the `wheels` folder only when given."""
    command = [sys.executable, "-m", "pip", "install", *(REQUIREMENTS[m] for m in missing)]
    return command + (["--no-index", "--find-links", str(wheels)] if wheels is not None else [])


def setup(wheels: Path | None, log: Path) -> dict[str, Any]:
    """Install the requirements of the modules that are missing (nothing when all import)."""
    started = time.monotonic()
    missing = missing_modules()
    record: dict[str, Any] = {"name": "setup", "description": "dependencies importable, else pip install them",
                              "log": str(log.name), "key": {"missing": missing}}
    if missing:
        command = pip_command(missing, wheels)
        record["key"]["command"] = " ".join(command)
        with open(log, "w", encoding="utf-8") as f:
            try:
                subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, timeout=SETUP_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                f.write(f"\npip timed out after {SETUP_TIMEOUT:.0f} s\n")
        still = missing_modules()
        record["key"]["still_missing"] = still
        if still:
            record["status"], record["error"] = "failed", f"cannot install {still} (see logs/{log.name})"
    record.setdefault("status", "ok")
    record["seconds"] = time.monotonic() - started
    return record


def run_command(command: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[int | None, float]:
    """Run ``python command`` from the repository root in its own process group, output to `log`; on timeout the
    whole group is killed. Returns the exit status (None on timeout) and the seconds it ran."""
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, time.monotonic() - started


def _tail(log: Path, lines: int = 6) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def run_step(step: Step, profile: Profile, out: Path, deadline: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one step within the time left; its record: status, seconds, error or reason, key numbers."""
    record: dict[str, Any] = {"name": step.name, "description": step.description, "log": f"logs/{step.name}.log"}
    left = deadline - time.monotonic()
    if left < profile.min_start[step.name]:
        return record | {"status": "skipped", "seconds": 0.0,
                         "reason": f"time budget: {max(left, 0):.0f} s left, the step needs at least "
                                   f"{profile.min_start[step.name]:.0f} s"}
    for name in step.outputs:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    timeout = min(left, profile.caps.get(step.name, left))
    log = out / record["log"]
    code, seconds = run_command(step.command, log, timeout, env)
    record["seconds"] = seconds
    if code is None:
        record["status"], record["error"] = "failed", f"stopped after {timeout:.0f} s (time budget or step cap)"
    elif code != 0:
        record["status"], record["error"] = "failed", f"exit status {code}: {_tail(log)}"
    else:
        record["status"] = "ok"
    try:
        record["key"] = step.collect(out)  # partial reports of a stopped step still give numbers
    except Exception as err:  # any unreadable output: its numbers are missing, the run goes on
        record["key"] = None
        if record["status"] == "ok":
            record["status"], record["error"] = "failed", f"results unreadable: {type(err).__name__}: {err}"
    if step.name == "cuda_tests" and record["status"] == "ok" and profile.device != "cpu":
        key = record["key"]
        if key["tests"] == 0 or key["skipped"]:
            record["status"] = "failed"
            record["error"] = f"{key['skipped']} of {key['tests']} CUDA tests skipped on a CUDA machine"
    return record


# ---------------------------------------------------------------- targets and summary


def _step(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [s for s in summary["steps"] if s["name"] == name and s.get("key")]
    return found[0]["key"] if found else None


def targets(summary: dict[str, Any], profile: Profile) -> list[dict[str, Any]]:
    """The project's GPU targets, checked against the measured numbers (``met`` None when not measured)."""
    best = None
    for name in ("speed", "speed_compile"):
        key = _step(summary, name)
        for variant, point in (key or {}).get("best_per_variant", {}).items():
            if best is None or point["encode_disentangle"] > best[1]["encode_disentangle"]:
                best = (variant, point)
    size, meshes = profile.renderer_target
    render = _step(summary, "render") or {}
    warp = render.get("render", {}).get(f"native {size}px x{meshes}", {}).get("warp_fwd_bwd_ms")
    stage1 = [(k, v["images_per_s"]) for k, v in render.get("stage1", {}).items() if "perceptual=random" in k]
    step = max(stage1, key=lambda kv: kv[1]) if stage1 else None

    def target(name: str, goal: str, value: float | None, where: str, met: Callable[[float], bool],
               shown: Callable[[float], str] = _fmt) -> dict[str, Any]:
        return {"name": name, "target": goal, "value": value, "shown": "-" if value is None else shown(value),
                "where": where, "met": None if value is None else bool(met(value))}

    where = f"batch {best[1]['batch']}, {best[0]}" if best else "not measured"
    return [
        target("encode+disentangle images/s at the best batch", ">= 100,000",
               best[1]["encode_disentangle"] if best else None, where, lambda v: v >= 100_000),
        target("RDM time added to encode at that batch", "<= 30%", best[1]["rdm_share"] if best else None, where,
               lambda v: v <= 0.30, lambda v: f"{100 * v:.0f}%"),
        target(f"renderer forward+backward (warp), {meshes} meshes at {size} px, ms", "<= 10",
               warp, f"native, {size} px x{meshes}", lambda v: v <= 10),
        target("Stage-1 step images/s at the released widths (with perceptual term)", ">= 2,000",
               step[1] if step else None, step[0] if step else "not measured", lambda v: v >= 2000),
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _rounded(value: Any) -> Any:
    """`value` with every float rounded to 4 significant digits (for reading)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def step_tables(out: Path) -> list[str]:
    """Each benchmark script's own markdown table of the reports found in `out` (partial ones included)."""
    import cpu_vs_device
    import render_speed
    import speed
    import stage2_speed

    sections = []
    for title, file, module in (("equality", "equality.json", cpu_vs_device), ("speed", "speed.json", speed),
                                ("render", "render.json", render_speed), ("stage2", "stage2.json", stage2_speed),
                                ("speed_compile", "speed-compile.json", speed)):
        path = out / file
        if path.is_file():
            try:
                sections += [f"### {title} (`{file}`)", "", module.markdown(_load(path)), ""]
            except (KeyError, TypeError, ValueError) as err:
                sections += [f"### {title} (`{file}`)", "", f"unreadable: {err!r}", ""]
    return sections


def markdown(summary: dict[str, Any], out: Path) -> str:
    """The summary as markdown: machine, steps, targets, then each step's table."""
    m = summary["machine"]
    lines = [f"# GPU check{' (dry run on the CPU)' if summary['dry_run'] else ''}", "",
             f"**Machine**: {m.get('gpu') or 'no GPU'}"
             + (f" ({m['gpu_memory_gib']:.0f} GiB)" if m.get("gpu_memory_gib") else "")
             + f", CUDA {m.get('cuda')}, torch {m.get('torch')}, {m.get('cpu_model')} ({m.get('cpu_count')} CPUs), "
             f"host {m.get('host')}",
             f"**Run**: started {summary['started_at']}, budget {summary['settings']['budget_s']:.0f} s, "
             f"took {summary.get('total_seconds', 0):.0f} s{'' if summary['complete'] else ' (still running)'}", "",
             "| step | status | seconds | note |", "|---|---|---:|---|"]
    for s in summary["steps"]:
        note = (s.get("error") or s.get("reason") or s["description"]).replace("\n", " ").replace("|", "/")
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', 0):.0f} | {note[:300]} |")
    lines += ["", "## Targets", "", "| target | goal | measured | where | met |", "|---|---|---:|---|---|"]
    for t in summary["targets"]:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "no")
        lines.append(f"| {t['name']} | {t['target']} | {t['shown']} | {t['where']} | {met} |")
    lines += ["", "## Key numbers", ""]
    for s in summary["steps"]:
        if s.get("key"):
            key = {k: v for k, v in s["key"].items() if k != "cases"}
            lines.append(f"- **{s['name']}**: `{json.dumps(_rounded(key))}`")
    tests = _step(summary, "cuda_tests")
    if tests:
        lines += ["", "## CUDA tests", "", *(f"- {case}: {outcome}" for case, outcome in tests["cases"].items())]
    lines += ["", "## Tables", ""]
    try:
        lines += step_tables(out)
    except ImportError as err:
        lines.append(f"tables unavailable: {err}")
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    """Write `text` atomically (plainly when the package itself cannot be imported: a summary must remain)."""
    try:
        from latentface.fileio import write_atomic
    except ImportError:
        path.write_text(text, encoding="utf-8")
        return
    write_atomic(path, text.encode("utf-8"))


def machine(device: str) -> dict[str, Any]:
    """`harness.machine_info` for `device`, plus GPU memory and the driver (``nvidia-smi``) where there is one."""
    import harness
    import torch

    info = harness.machine_info([torch.device(device)])
    if device != "cpu":
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
            info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    return info


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Steps, in order: " + ", ".join(STEP_NAMES) + ".")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: gpu-check-<hostname>, with -dry-run for a dry run)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for all steps together (default: 480, a dry run 300)")
    p.add_argument("--steps", nargs="+", choices=STEP_NAMES, default=list(STEP_NAMES), metavar="STEP",
                   help="steps to run (default: all; the others are recorded as skipped)")
    p.add_argument("--wheels", type=Path, default=None,
                   help="folder of wheels to install missing dependencies from (pip --no-index --find-links)")
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at tiny sizes")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = Path(f"gpu-check-{socket.gethostname()}{'-dry-run' if args.dry_run else ''}")
    if args.budget is None:
        args.budget = 300.0 if args.dry_run else 480.0
    if args.budget <= 0:
        p.error("--budget must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = DRY_RUN if args.dry_run else GPU
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + args.budget
    summary: dict[str, Any] = {
        "dry_run": args.dry_run, "complete": False, "machine": {"host": socket.gethostname()},
        "settings": {"device": profile.device, "budget_s": args.budget, "steps": args.steps,
                     "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])},
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "steps": [], "targets": [],
    }

    def save() -> None:
        summary["total_seconds"] = time.monotonic() - started
        summary["targets"] = targets(summary, profile)
        write(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        write(out / "summary.md", markdown(summary, out))

    if "setup" in args.steps:
        summary["steps"].append(setup(args.wheels, out / "logs" / "setup.log"))
    else:
        summary["steps"].append({"name": "setup", "description": "dependencies", "status": "skipped",
                                 "seconds": 0.0, "reason": "not selected"})
    sys.path.insert(0, str(BENCHMARKS))
    sys.path.insert(0, str(ROOT))
    try:
        import torch
    except ImportError as err:
        summary["error"] = f"torch cannot be imported: {err}"
        save()
        print(summary["error"], file=sys.stderr)
        return 2
    if profile.device != "cpu" and not torch.cuda.is_available():
        summary["error"] = "no CUDA device: run with --dry-run on a CPU-only machine"
        save()
        print(summary["error"], file=sys.stderr)
        return 2
    try:
        summary["machine"] = machine(profile.device)
    except Exception as err:  # a partial description beats none
        summary["machine"]["error"] = f"{type(err).__name__}: {err}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if args.dry_run:
        env["OMP_NUM_THREADS"] = "1"  # tiny sizes run fastest on one thread, and leave the machine to others
    save()
    for step in plan(profile, out):
        if step.name not in args.steps:
            record = {"name": step.name, "description": step.description, "status": "skipped", "seconds": 0.0,
                      "reason": "not selected"}
        else:
            print(f"[{time.monotonic() - started:5.0f} s] {step.name}: {step.description}", file=sys.stderr,
                  flush=True)
            record = run_step(step, profile, out, deadline, env)
        summary["steps"].append(record)
        save()
    summary["complete"] = True
    save()
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"Results in {out}", file=sys.stderr)
    return 1 if any(s["status"] == "failed" for s in summary["steps"]) else 0


if __name__ == "__main__":
    sys.exit(main())

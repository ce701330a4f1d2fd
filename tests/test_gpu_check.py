"""`benchmarks/gpu_check.py`: the dry run goes through every step on the CPU and writes a complete summary; the
runner records failures, stops steps that run out of time and skips what the budget leaves no time for."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
STEPS = ["setup", "cuda_tests", "equality", "speed", "render", "stage2", "speed_compile", "train"]


def _gpu_check() -> ModuleType:
    if "benchmark_gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("benchmark_gpu_check", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmark_gpu_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["benchmark_gpu_check"]


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "check"
    # a budget far above the minute it takes, so that a busy machine does not skip steps
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--budget", "1800"],
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["complete"] is True and summary["dry_run"] is True
    assert summary["machine"]["cpu_model"] and summary["machine"]["torch"] and summary["machine"]["gpu"] is None
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == STEPS
    assert {name: s["status"] for name, s in steps.items()} == dict.fromkeys(STEPS, "ok"), summary["steps"]
    for name in STEPS[1:]:
        assert (out / steps[name]["log"]).is_file() and steps[name]["seconds"] > 0

    tests = steps["cuda_tests"]["key"]
    assert tests["tests"] >= 5 and tests["skipped"] == tests["tests"]  # no CUDA here: every one is skipped
    for name in ("tests.test_raster::test_cuda_matches_cpu[", "tests.test_formation::test_cuda_matches_cpu"):
        assert any(case.startswith(name) for case in tests["cases"]), tests["cases"]
    assert steps["equality"]["key"]["passed"] is True
    assert set(steps["speed"]["key"]["best_per_variant"]) == {"float32/none", "bfloat16/none"}
    assert set(steps["speed_compile"]["key"]["best_per_variant"]) == {"float32/eager"}
    for key in ("speed", "speed_compile"):
        assert steps[key]["key"]["complete"] is True
        for point in steps[key]["key"]["best_per_variant"].values():
            assert _positive(point["encode_disentangle"]) and _positive(point["released"])
    render = steps["render"]["key"]
    assert set(render["render"]) == {"native 32px x2"}
    assert set(render["stage1"]) == {"native perceptual=random x2", "native perceptual=none x2"}
    assert _positive(steps["stage2"]["key"]["1 clips"]["images_per_s"])
    train = steps["train"]["key"]
    assert train["steps"] == 2 and _positive(train["images_per_s"])
    assert (out / train["weights"] / "config.json").is_file() and not (out / "train-run").exists()

    for t in summary["targets"]:  # evaluated at the dry run's own sizes: CPU numbers, not the targets' sizes
        assert isinstance(t["met"], bool) and math.isfinite(t["value"]) and t["shown"] != "-", t
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Targets" in text and all(f"| {name} | ok |" in text for name in STEPS)
    assert "| device | RDM width | dtype | compile |" in text  # speed.py's own table
    assert proc.stdout.strip() == text.strip()


def test_failures_and_timeouts_do_not_stop_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gc = _gpu_check()
    script = "import json, sys; json.dump({'results': []}, open(sys.argv[1], 'w'))"
    steps = [
        gc.Step("equality", "sleeps", ["-c", "import time; time.sleep(60)"], [], lambda o: {}),
        gc.Step("speed", "fails", ["-c", "print('about to fail'); raise SystemExit('boom')"], [], lambda o: {}),
        gc.Step("stage2", "works", ["-c", script, str(tmp_path / "out" / "stage2.json")], ["stage2.json"],
                lambda o: gc._stage2_key(o / "stage2.json")),
    ]
    monkeypatch.setattr(gc, "plan", lambda profile, out: steps)
    monkeypatch.setattr(gc, "DRY_RUN", dataclasses.replace(gc.DRY_RUN, caps={"equality": 2}))
    started = time.monotonic()
    assert gc.main(["--dry-run", "--out", str(tmp_path / "out"), "--steps", "equality", "speed", "stage2"]) == 1
    assert time.monotonic() - started < 30  # the sleeping step was stopped
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    found = {s["name"]: s for s in summary["steps"]}
    assert found["setup"]["status"] == "skipped" and found["setup"]["reason"] == "not selected"
    assert found["equality"]["status"] == "failed" and "stopped after 2 s" in found["equality"]["error"]
    assert found["speed"]["status"] == "failed" and "boom" in found["speed"]["error"]
    assert found["stage2"]["status"] == "ok" and found["stage2"]["key"] == {}
    assert all(t["met"] is None and t["value"] is None for t in summary["targets"])


def test_budget_skips_what_it_leaves_no_time_for(tmp_path: Path) -> None:
    gc = _gpu_check()
    assert gc.main(["--dry-run", "--out", str(tmp_path / "out"), "--budget", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in summary["steps"]] == STEPS
    for step in summary["steps"][1:]:
        assert step["status"] == "skipped" and step["reason"].startswith("time budget"), step
    assert "| train | skipped |" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_cuda_tests_use_the_marker() -> None:
    """The CUDA step selects tests by the ``cuda`` marker: a test skipped by hand without CUDA would never run."""
    by_hand = [p.name for p in (ROOT / "tests").glob("*.py")
               if p.name != Path(__file__).name and "skipif(not torch.cuda.is_available()" in p.read_text("utf-8")]
    assert by_hand == []
    files = _gpu_check().cuda_test_files()
    assert {"tests/test_formation.py", "tests/test_raster.py"} <= set(files) and "tests/test_gpu_check.py" not in files


def test_requirements_are_the_projects() -> None:
    gc = _gpu_check()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert set(gc.REQUIREMENTS.values()) <= {d.split(";")[0].strip() for d in declared}
    assert gc.pip_command(["diffusers", "PIL"], Path("wheels"))[4:] == [
        "diffusers>=0.30", "pillow>=10.1", "--no-index", "--find-links", "wheels"]
    assert gc.pip_command(["timm"], None)[4:] == ["timm>=1.0"]

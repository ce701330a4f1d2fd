"""`benchmarks/render_speed.py --quick` runs end to end and writes a complete JSON report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from latentface import LatentFace, LatentFaceConfig
from latentface.hub import weights_digest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "render_speed.py"
MEASURES = ("raster_fwd", "raster_fwd_bwd", "warp_fwd", "warp_fwd_bwd")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_render_speed_script_quick(tmp_path: Path) -> None:
    output = tmp_path / "render.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--backends", "native", "--threads", "1",
         "--step-perceptual", "random", "none", "--output", str(output)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| device | backend | size | batch |" in proc.stdout and "share of step" in proc.stdout
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["complete"] is True
    assert report["machine"]["cpu_model"] and "pytorch3d" in report["machine"]
    [point] = report["results"]
    assert (point["device"], point["backend"], point["size"], point["batch_size"]) == ("cpu", "native", 32, 2)
    for name in MEASURES:
        assert _positive(point[name]["ms_per_batch_median"]) and point[name]["calls"] >= 1
    assert [(r["perceptual"], r["batch_size"]) for r in report["stage1"]] == [("random", 2), ("none", 2)]
    for stage1 in report["stage1"]:
        assert _positive(stage1["step"]["images_per_s"]) and _positive(stage1["formation_fwd_bwd"]["calls"])
        assert 0 < stage1["share_of_step"] and _positive(stage1["added_to_rest_of_step"])
    torch.manual_seed(0)  # the step's seeded random weights
    digest = weights_digest(LatentFace(LatentFaceConfig(rdm_width=None)))
    assert [stage1["weights_sha256"] for stage1 in report["stage1"]] == [digest, digest]


def test_render_speed_script_rejects_missing_backend(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "nope", "--output", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr

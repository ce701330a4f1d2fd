"""`benchmarks/speed.py --quick` runs end to end and writes a complete JSON report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
MEASURES = ("encode", "encode_disentangle", "features_fer", "features_verification", "released_encode_disentangle")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_speed_script_quick(tmp_path: Path) -> None:
    output = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--output", str(output)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| device | RDM width | batch |" in proc.stdout

    report = json.loads(output.read_text(encoding="utf-8"))
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
    machine = report["machine"]
    for key in ("cpu_model", "cpu_count", "torch_threads", "torch", "diffusers", "gpu"):
        assert key in machine
    assert _positive(machine["cpu_count"]) and _positive(machine["torch_threads"])
    assert report["settings"]["batch_sizes"] == [1, 4]
    assert [(c["device"], c["rdm_width"]) for c in report["checks"]] == [("cpu", 128)]
    assert 0 <= report["checks"][0]["max_abs_diff"] <= 1e-3

    results = report["results"]
    assert [(r["device"], r["rdm_width"], r["batch_size"]) for r in results] == [("cpu", 128, 1), ("cpu", 128, 4)]
    for r in results:
        for name in MEASURES:
            for field in ("images_per_s", "ms_per_batch_median", "ms_per_batch_mean", "seconds", "calls"):
                assert _positive(r[name][field]), (r["batch_size"], name, field, r[name][field])
        assert _positive(r["speedup_vs_encode_disentangle"]) and _positive(r["speedup_vs_features_fer"])
        assert math.isfinite(r["rdm_share"])  # a difference of timings: can be noisy, but must be a number

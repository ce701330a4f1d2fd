"""`benchmarks/encode_speed.py` runs end to end and reports every point it timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from latentface import LatentFace
from latentface.hub import weights_digest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "encode_speed.py"


def test_encode_speed_script(tmp_path: Path) -> None:
    output = tmp_path / "encode.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--images", "6", "--detect-images", "2", "--canvas", "256", "--batch-size", "4",
         "--repeats", "1", "--protocols", "fer", "codes", "--threads", "1", "--jpeg-images", "5", "--jpeg-size", "48",
         "--workers", "0", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| protocol | --detect | input | images | encoded | images/s |" in proc.stdout
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["model"]["weights_sha256"] == weights_digest(LatentFace.from_pretrained("synthfaces-tiny"))
    plain = [r for r in report["results"] if not r["detect"]]
    assert [r["protocol"] for r in plain] == ["fer", "codes"]
    for r in plain:
        assert r["images"] == r["encoded"] == 6 and len(r["seconds"]) == 1 and r["images_per_s"] > 0
    jpeg = report["jpeg"]
    assert jpeg["images"] == 5 and jpeg["protocol"] == "fer" and jpeg["input"] == "48 x 48 JPEG photos (quality 90)"
    assert [r["workers"] for r in jpeg["runs"]] == [0, 2]
    for r in jpeg["runs"]:
        assert r["encoded"] == 5 and len(r["seconds"]) == 1 and r["images_per_s"] > 0
    assert "| --workers | encoded | images/s |" in proc.stdout
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        assert len(report["results"]) == 2
    else:
        [detect] = [r for r in report["results"] if r["detect"]]
        assert detect["images"] == 2 and 0 <= detect["encoded"] <= 2 and detect["images_per_s"] > 0

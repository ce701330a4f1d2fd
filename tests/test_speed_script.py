"""`benchmarks/speed.py` runs end to end and writes a complete JSON report; its variants (dtypes, compiled
networks) time the same computation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentface import LatentFace, LatentFaceConfig
from latentface.hub import weights_digest

pytest.importorskip("diffusers")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "speed.py"
MEASURES = ("encode", "encode_disentangle", "features_fer", "features_verification", "released_encode_disentangle")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_speed_script_quick(tmp_path: Path) -> None:
    """Every (compile, dtype) pair gets a row per batch, eager first."""
    output = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--batch-sizes", "1", "4", "--min-time", "0.05", "--threads",
         "1", "--dtype", "float32", "bfloat16", "--compile", "none", "eager", "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| device | RDM width | dtype | compile | batch |" in proc.stdout

    report = json.loads(output.read_text(encoding="utf-8"))
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
    assert report["complete"] is True
    machine = report["machine"]
    for key in ("cpu_model", "cpu_count", "torch_threads", "torch", "diffusers", "gpu"):
        assert key in machine
    assert _positive(machine["cpu_count"]) and _positive(machine["torch_threads"])
    assert report["settings"]["batch_sizes"] == [1, 4]
    assert [(c["device"], c["rdm_width"]) for c in report["checks"]] == [("cpu", 128)]
    assert 0 <= report["checks"][0]["max_abs_diff"] <= 1e-3
    torch.manual_seed(128)  # the check's random weights, seeded by the width
    assert report["checks"][0]["weights_sha256"] == weights_digest(LatentFace(LatentFaceConfig(rdm_width=128)))

    results = report["results"]
    assert [(r["device"], r["rdm_width"], r["compile"], r["dtype"], r["batch_size"]) for r in results] == [
        ("cpu", 128, backend, dtype, batch) for backend in ("none", "eager") for dtype in ("float32", "bfloat16")
        for batch in (1, 4)]
    for r in results:
        for name in MEASURES:
            for field in ("images_per_s", "ms_per_batch_median", "ms_per_batch_mean", "seconds", "calls"):
                assert _positive(r[name][field]), (r["batch_size"], name, field, r[name][field])
        assert _positive(r["speedup_vs_encode_disentangle"]) and _positive(r["speedup_vs_features_fer"])
        assert math.isfinite(r["rdm_share"])  # a difference of timings: can be noisy, but must be a number


def test_speed_script_refuses_unknown_backend(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--compile", "nope", "--output", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown --compile backend" in proc.stderr


def test_compiled_networks_compute_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """`compile_networks` routes every timed path through compiled graphs that give the eager results, at several
    batch sizes without running out of dynamo's recompilations (which would leave networks eager)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    import speed

    graphs = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(gm)
        return gm.forward

    def outputs(model, released, batch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(batch)
        x = torch.rand(batch, 3, 64, 64, generator=g)
        noise = [torch.randn(batch, 256, generator=g) for _ in range(2)]
        codes = model.encode(x)
        ident = model.disentangle(codes, noise=speed.Latents(texture=noise[0], shape=noise[1])).identity
        ref = released.latents(x, [n[:, :, None, None] for n in noise])
        return [codes.texture, codes.shape, codes.light, codes.pose, ident.texture, ident.shape, ref[0][1], ref[1][1]]

    torch.set_num_threads(1)
    torch._dynamo.reset()
    reference = speed.build(128, torch.device("cpu"))
    model, released = speed.build(128, torch.device("cpu"))
    speed.compile_networks(model, released, backend)
    try:
        with torch.inference_mode():
            for batch in (1, 2, 3):
                for a, b in zip(outputs(*reference, batch), outputs(model, released, batch), strict=True):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    finally:
        torch._dynamo.reset()
    assert graphs

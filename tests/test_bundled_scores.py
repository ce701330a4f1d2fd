"""The bundled `synthfaces-tiny` card is pinned to its weights: the committed reports measured these weights, the card
is exactly what those reports give, and the first images score today what the reports say they scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from latentface import LatentFace
from latentface.data.synthfaces import SynthConfig, SynthFacesImages
from latentface.hub import CONFIG_NAME, WEIGHTS_NAME, resolve, weights_digest
from latentface.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import make_synthfaces_tiny as build  # noqa: E402
import reconstruction  # noqa: E402

WEIGHTS = ROOT / "latentface" / "weights" / "synthfaces-tiny"
REPORTS = {name: f"{name}-synthfaces-tiny-final.json" for name in build.EVALS}
"""The card's reports in `benchmarks/results/`, by their `EVALS` name."""
REMEASURED = 32
"""Images re-measured: the first half of the benchmark's first batch (a few seconds on one CPU thread)."""


def _report(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "benchmarks" / "results" / REPORTS[name]).read_text(encoding="utf-8"))


def _stored_dtype() -> str:
    """The floating dtype the shipped safetensors file stores (the card says which)."""
    with safe_open(WEIGHTS / WEIGHTS_NAME, framework="pt") as f:
        dtypes = {str(f.get_slice(key).get_dtype()) for key in f.keys()}
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
    floating = {names[d] for d in dtypes if d in names}
    assert len(floating) == 1, dtypes
    return floating.pop()


def test_bundled_weights_are_the_bundled_folder() -> None:
    assert resolve("synthfaces-tiny") == WEIGHTS


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_reports_measured_the_bundled_weights(name: str) -> None:
    digest = weights_digest(LatentFace.from_pretrained(WEIGHTS))
    assert _report(name)["model"]["weights_sha256"] == digest


def test_card_is_rebuilt_from_the_committed_reports() -> None:
    phases = {p: load_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml") for p in build.PHASES}
    commands, init = [], None
    for phase in build.PHASES:
        run_folder, command = build.train_command(phase, ROOT / "runs", init)
        commands.append(command)
        init = run_folder / "final"
    commands += build.eval_commands()
    recon = _report("reconstruction")
    model = json.loads((WEIGHTS / CONFIG_NAME).read_text(encoding="utf-8"))
    text = build.card(commands, phases, model, recon, _report("disentangle"), recon["machine"], _stored_dtype(),
                      _report("disentangle-held"))
    shipped = (WEIGHTS / "README.md").read_text(encoding="utf-8")
    assert text.splitlines() == shipped.splitlines()


def test_per_image_scores_give_the_card_numbers() -> None:
    model = _report("reconstruction")["results"]["model"]
    for metric in reconstruction.METRICS:
        values = torch.tensor(model["per_image"][metric], dtype=torch.float64)
        assert len(values) == model[metric]["count"] + model[metric]["excluded"]
        assert float(values.mean()) == pytest.approx(model[metric]["mean"], rel=1e-9)
        assert float(values.std()) == pytest.approx(model[metric]["std"], rel=1e-9)


@pytest.mark.usefixtures("one_thread")
def test_first_images_score_as_reported() -> None:
    """Re-measure the first batch of the card's reconstruction run (same split, seed, images and scoring code)."""
    report = _report("reconstruction")
    settings, data = report["settings"], report["settings"]["data"]
    assert data["source"] == "synthfaces" and settings["batch_size"] >= REMEASURED
    dataset = SynthFacesImages(data["identities"], data["samples_per_identity"], split=data["split"], seed=data["seed"],
                               config=SynthConfig(size=data["size"]))
    model = LatentFace.from_pretrained("synthfaces-tiny")
    first = next(reconstruction.synth_batches(dataset, REMEASURED))
    out = reconstruction.evaluate(model, iter([first]), REMEASURED, fov=settings["fov"],
                                  renormalize=settings["renormalize_normals"], constant=settings["constant_depth"],
                                  progress=False)
    measured = out["results"]["model"]["per_image"]
    reported = report["results"]["model"]["per_image"]
    for metric in reconstruction.METRICS:
        # The same images and scoring code: only float32 reduction order (threads, batch size, kernels) can differ,
        # a few ulp of a value that sums ~1500 pixels; a changed weight or metric moves these scores by whole percents.
        assert measured[metric] == pytest.approx(reported[metric][:REMEASURED], rel=1e-4), metric

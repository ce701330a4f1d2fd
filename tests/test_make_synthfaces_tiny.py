"""The bundled weights' build script: its model card follows the phases' configs, `--set` is checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import make_synthfaces_tiny as build  # noqa: E402

from latentface.training.config import load_config  # noqa: E402


def _results(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}-synthfaces-tiny-final.json").read_text())


@pytest.mark.parametrize("gpu", [None, "NVIDIA H200"])
def test_card_describes_the_phases_and_machine(gpu: str | None) -> None:
    phases = {p: load_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml",
                             ["optim.max_steps=1234"] if p == "stage2" else []) for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": gpu}
    text = build.card([["accelerate", "launch", "benchmarks/train.py"]], phases, model, _results("reconstruction"),
                      _results("disentangle"), machine)
    assert ("NVIDIA H200 GPU" if gpu else "2-core CPU") in text
    s2, smooth = phases["stage2"], phases["stage1_smooth"]
    assert f"| stage2 | 2 | 1234 | {s2.optim.batch_size} | {s2.optim.lr:g} | - | - | - | {s2.seed} |" in text
    assert (f"| stage1_smooth | 1 | {smooth.optim.max_steps} | {smooth.optim.batch_size} | {smooth.optim.lr:g} | "
            f"{smooth.loss.lam_flip:g} | {smooth.loss.lam_perc:g} | {smooth.loss.lam_depth_sm:g} | {smooth.seed} |"
            in text)
    assert ("no perceptual loss" in text) == any(phases[p].loss.lam_perc == 0 for p in ("stage1", "stage1_smooth"))
    assert f"Stage-1 batch {smooth.optim.batch_size} (released 64)" in text
    assert f"latent size {model['latent_dim']}" in text


@pytest.mark.parametrize("bad", ["stage1", "stage3:optim.lr=1", "stage1:optim.lr"])
def test_bad_overrides_are_usage_errors(bad: str) -> None:
    with pytest.raises(SystemExit) as err:
        build.main(["--set", bad])
    assert err.value.code == 2

"""The bundled weights' build script: its model card follows the phases' configs, `--set` is checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import make_synthfaces_tiny as build  # noqa: E402

from latentface.training.config import load_train_config  # noqa: E402


def _results(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}-synthfaces-tiny-final.json").read_text())


@pytest.mark.parametrize("gpu", [None, "NVIDIA H200"])
def test_card_describes_the_phases_and_machine(gpu: str | None) -> None:
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml",
                             ["optim.max_steps=1234"] if p == "stage2" else []) for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": gpu}
    text = build.card([["accelerate", "launch", "benchmarks/train.py"]], phases, model, _results("reconstruction"),
                      _results("disentangle"), machine)
    assert ("NVIDIA H200 GPU" if gpu else "2-core CPU") in text
    s2, narrow = phases["stage2"], phases["stage1_narrow"]
    assert f"| stage2 | 2 | 1234 | {s2.optim.batch_size} | {s2.optim.lr:g} | - | - | - | {s2.seed} |" in text
    assert (f"| stage1_narrow | 1 | {narrow.optim.max_steps} | {narrow.optim.batch_size} | {narrow.optim.lr:g} | "
            f"{narrow.loss.lam_flip:g} | {narrow.loss.lam_perc:g} | {narrow.loss.lam_depth_sm:g} | {narrow.seed} |"
            in text)
    stage1 = [p for p in build.PHASES if phases[p].stage == 1]
    assert ("no perceptual loss" in text) == any(phases[p].loss.lam_perc == 0 for p in stage1)
    assert ("O-Net" in text) == any(phases[p].loss.perceptual_net == "onet" for p in stage1)
    assert ("flipped-branch weight" in text) == any(phases[p].loss.lam_flip != 0.5 for p in stage1)
    assert f"Stage-1 batch {narrow.optim.batch_size} (released 64)" in text
    decay = phases["stage1_decay"].optim
    assert f"| stage1_decay | 1 | {decay.max_steps} | {decay.batch_size} | {decay.lr:g} (cosine) |" in text
    assert ("cosine learning-rate decay" in text) == any(c.optim.lr_schedule == "cosine" for c in phases.values())
    assert f"latent size {model['latent_dim']}" in text


@pytest.mark.parametrize("bad", ["stage1", "stage3:optim.lr=1", "stage1:optim.lr"])
def test_bad_overrides_are_usage_errors(bad: str) -> None:
    with pytest.raises(SystemExit) as err:
        build.main(["--set", bad])
    assert err.value.code == 2


def test_shipped_weights_are_stored_in_half_precision(tmp_path: Path) -> None:
    import torch
    from conftest import seeded_model, tiny_config

    from latentface import LatentFace

    seeded_model(tiny_config(), seed=0).save_pretrained(tmp_path / "final")
    folder = build.shipped(tmp_path / "final", "float16", tmp_path / "shipped")
    size = {name: (path / "model.safetensors").stat().st_size for name, path in (("full", tmp_path / "final"),
                                                                                  ("half", folder))}
    assert size["half"] < 0.55 * size["full"]
    assert LatentFace.from_pretrained(folder).dtype == torch.float32
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml") for p in build.PHASES}
    model = json.loads((folder / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    text = build.card([["python"]], phases, model, _results("reconstruction"), _results("disentangle"), machine,
                      "float16")
    assert "stored in float16" in text


@pytest.mark.parametrize(("settings", "expected"), [
    ({"min_depth": 0.9, "max_depth": 1.1, "clip_sample": 1.0}, []),
    ({"min_depth": 0.93, "max_depth": 1.07, "clip_sample": None},
     ["depth range (0.93, 1.07) (released (0.9, 1.1))", "predicted x0 when sampling: none"]),
    ({"min_depth": 0.9, "max_depth": 1.1, "clip_sample": 4.0}, ["predicted x0 when sampling: [-4, 4]"]),
    ({"min_depth": 0.944, "max_depth": 1.04, "border_depth": 1.04, "clip_sample": 1.0},
     ["depth range (0.944, 1.04) (released (0.9, 1.1))", "border depth 1.04 (`border_depth`"]),
    ({"min_depth": 0.9, "max_depth": 1.1, "clip_sample": 1.0, "min_ambient": 0.4, "max_ambient": 0.65,
      "min_diffuse": 0.3, "max_diffuse": 0.55},
     ["ambient range (0.4, 0.65), diffuse range (0.3, 0.55) (released (0, 1) each)"]),
])
def test_card_names_model_deviations(settings: dict, expected: list[str]) -> None:
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml") for p in build.PHASES}
    released = {"border_depth": None, "min_ambient": 0.0, "max_ambient": 1.0, "min_diffuse": 0.0, "max_diffuse": 1.0}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text()) | released
    model |= settings
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    text = build.card([["python"]], phases, model, _results("reconstruction"), _results("disentangle"), machine)
    for phrase in expected:
        assert phrase in text
    assert ("depth range" in text) == any("depth range" in e for e in expected)
    assert ("predicted x0" in text) == any("predicted x0" in e for e in expected)
    assert ("border depth" in text) == any("border depth" in e for e in expected)
    assert ("ambient range" in text) == any("ambient range" in e for e in expected)


@pytest.mark.parametrize("released", [True, False])
def test_card_names_stage2_deviations(released: bool) -> None:
    overrides = (["optim.batch_size=1", "optim.weight_decay=5e-4", "optim.lr=1e-4", "loss.rdm_snr_gamma=none",
                  "data.clip_length=16", "data.clip_light=clip", "loss.rdm_target_gap=0"]
                 if released else
                 ["optim.batch_size=4", "optim.weight_decay=0", "loss.rdm_snr_gamma=5", "data.clip_length=32",
                  "data.clip_light=frame", "loss.rdm_target_gap=8"])
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml",
                             overrides if p == "stage2" else []) for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    model["rdm_norm_groups"] = 32 if released else 8
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    text = build.card([["python"]], phases, model, _results("reconstruction"), _results("disentangle"), machine)
    for phrase in ("Stage-2 batch 4 clips (released 1)", "weight decay 0 in some phases", "min(SNR(t), 5)",
                   "8 GroupNorm groups in the RDM (released 32)", "Stage-2 clips of 32 frames",
                   "a new light for every frame of the Stage-2 clips", "leaves out the frames nearer than 8"):
        assert (phrase in text) != released, phrase


@pytest.mark.parametrize("sigma_max", ["none", "0.08"])
def test_card_names_the_confidence_cap(sigma_max: str) -> None:
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml",
                                   [f"loss.sigma_max={sigma_max}"] if p.startswith("stage1") else [])
              for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    text = build.card([["python"]], phases, model, _results("reconstruction"), _results("disentangle"), machine)
    assert ("confidence maps capped at 0.08 in some phases" in text) == (sigma_max != "none")


def test_card_shows_retrieval_with_held_factors() -> None:
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml") for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    dis, held = _results("disentangle"), _results("disentangle-held")
    text = build.card([["python"]], phases, model, _results("reconstruction"), dis, machine, held=held)
    a, b = dis["results"]["features"]["raw_shape"]["retrieval"], held["results"]["features"]["raw_shape"]["retrieval"]
    assert f"| raw_shape | {a['top1']:.3f} | {a['mean_ap']:.3f} | {b['top1']:.3f} | {b['mean_ap']:.3f} |" in text
    assert "--hold light,shift" in text
    assert "--hold" not in build.card([["python"]], phases, model, _results("reconstruction"), dis, machine)


def test_card_shows_the_map_rows_when_the_report_has_them() -> None:
    phases = {p: load_train_config(ROOT / "benchmarks" / "configs" / f"synthfaces_tiny_{p}.toml") for p in build.PHASES}
    model = json.loads((ROOT / "latentface" / "weights" / "synthfaces-tiny" / "config.json").read_text())
    machine = {"cpu_model": "AMD EPYC", "cpu_usable": 2, "torch": "2.14.1", "gpu": None}
    dis = _results("disentangle")
    feats = dis["results"]["features"]
    without = {**dis, "results": {**dis["results"], "features": {k: v for k, v in feats.items()
                                                                  if k not in build.MAP_ROWS}}}
    text = build.card([["python"]], phases, model, _results("reconstruction"), without, machine)
    assert "albedo_map" not in text and "`*_map` rows" not in text
    row = {"dim": 768, "retrieval": {"top1": 0.5, "mean_ap": 0.25}, "probe": {"accuracy": 0.375}}
    with_maps = {**dis, "results": {**dis["results"], "features": {**feats, **dict.fromkeys(build.MAP_ROWS, row)}}}
    text = build.card([["python"]], phases, model, _results("reconstruction"), with_maps, machine)
    for name in build.MAP_ROWS:
        assert f"| {name} | 0.500 | 0.250 | 0.375 |" in text
    assert "`*_map` rows" in text

"""Record the DDIM sampling behaviour of diffusers 0.14.0 into ``ddim_0_14_reference.npz``.

This script must be run in a SEPARATE virtual environment that has ``diffusers==0.14.0`` (the version the
LatentFace paper's released numbers used), not in the project's environment (which has a current diffusers).
One way to build that environment (a plain venv, without ``--system-site-packages``)::

    python3 -m venv /tmp/venv014
    /tmp/venv014/bin/pip install torch==2.14.1 numpy "diffusers==0.14.0" "huggingface_hub<0.26"
    /tmp/venv014/bin/python tests/data/make_ddim_0_14_fixture.py

(diffusers 0.14.0 imports ``hf_cache_home`` / ``cached_download`` from huggingface_hub, which newer hub
releases removed, hence the ``huggingface_hub<0.26`` pin.)

What it records, with ``torch.manual_seed(0)`` fixed:

* ``DDIMScheduler(prediction_type="sample")`` with every other argument at its default (1000 train steps,
  linear betas 1e-4..0.02, ``clip_sample=True``, ``set_alpha_to_one=True``, ``steps_offset=0``);
  its ``alphas_cumprod`` (float32, (1000,)) and ``final_alpha_cumprod`` (float32, ()).
* A start noise ``x_T`` and a condition ``cond``, both (8, 256, 1, 1) standard Gaussian float32.
* For each step count n in (5, 10, 3): ``set_timesteps(n)`` and the full eta=0 sampling loop
  ``x = scheduler.step(model_output, t, x, eta=0).prev_sample`` from ``x_T``, with the deterministic
  stand-in model ``model_output = 1.5 * tanh(0.8 * x_t + cond) + 0.3 * sin(t / 100)`` (the sin in
  Python float64 on the integer timestep, then added to the float32 tensor). Its outputs reach about
  +-1.8, so many x0 predictions leave [-1, 1] and the clamp matters. Per step it stores t, x_t,
  model_output and prev_sample, stacked along a leading step axis.

Keys of the npz (all arrays float32 except the int64 timesteps, and ``meta``, a JSON string):
``meta``, ``alphas_cumprod``, ``final_alpha_cumprod``, ``cond``, ``x_T``, and for n in 5, 10, 3:
``timesteps_{n}`` (n,), ``x_T_{n}`` (8, 256, 1, 1, the same x_T for every n), ``x_t_{n}``,
``model_output_{n}``, ``prev_sample_{n}`` (each (n, 8, 256, 1, 1)).

It also prints, per step count, the max abs difference between the recorded ``prev_sample`` and the
closed form ``sqrt(a_prev) * clamp(x0, -1, 1) + sqrt(1 - a_prev) * x0`` (x0 = the unclamped model output),
the update that diffusers 0.14.0 applies for ``prediction_type="sample"``; and, for contrast, the
difference to the textbook DDIM update whose noise is derived from the (clamped or unclamped) x0.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

OUT = Path(__file__).resolve().parent / "ddim_0_14_reference.npz"
STEP_COUNTS: tuple[int, ...] = (5, 10, 3)
SHAPE: tuple[int, ...] = (8, 256, 1, 1)
SEED = 0
MODEL_FORMULA = "model_output = 1.5 * torch.tanh(x_t * 0.8 + cond) + 0.3 * math.sin(int(t) / 100)"


def stand_in_model(x_t: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
    """Deterministic x0 'prediction' that needs no network; exceeds [-1, 1] for many entries."""
    return 1.5 * torch.tanh(x_t * 0.8 + cond) + 0.3 * math.sin(int(t) / 100)


def closed_forms(x_t: torch.Tensor, x0: torch.Tensor, a_t: torch.Tensor,
                 a_prev: torch.Tensor) -> dict[str, torch.Tensor]:
    """Candidate eta=0 updates for x0-prediction, computed by hand in float32."""
    x0_c = x0.clamp(-1, 1)
    eps_unclamped = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    eps_clamped = (x_t - a_t.sqrt() * x0_c) / (1 - a_t).sqrt()
    return {
        "claim: sqrt(a_prev)*clamp(x0) + sqrt(1-a_prev)*x0": a_prev.sqrt() * x0_c + (1 - a_prev).sqrt() * x0,
        "eps from unclamped x0": a_prev.sqrt() * x0_c + (1 - a_prev).sqrt() * eps_unclamped,
        "textbook: eps from clamped x0": a_prev.sqrt() * x0_c + (1 - a_prev).sqrt() * eps_clamped,
    }


def run(scheduler: DDIMScheduler, steps: int, x_T: torch.Tensor, cond: torch.Tensor) -> dict[str, np.ndarray]:
    """Full eta=0 sampling loop for `steps` steps; returns the stacked per-step records."""
    scheduler.set_timesteps(steps)
    ratio = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    rec: dict[str, list[np.ndarray]] = {"x_t": [], "model_output": [], "prev_sample": []}
    worst: dict[str, float] = {}
    clipped = 0
    x = x_T.clone()
    for t in scheduler.timesteps:
        model_output = stand_in_model(x, int(t), cond)
        prev = scheduler.step(model_output, t, x, eta=0).prev_sample
        a_t = scheduler.alphas_cumprod[int(t)]
        prev_t = int(t) - ratio
        a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        for name, value in closed_forms(x, model_output, a_t, a_prev).items():
            worst[name] = max(worst.get(name, 0.0), (value - prev).abs().max().item())
        clipped += int((model_output.abs() > 1).sum())
        rec["x_t"].append(x.numpy().copy())
        rec["model_output"].append(model_output.numpy().copy())
        rec["prev_sample"].append(prev.numpy().copy())
        x = prev
    timesteps = scheduler.timesteps.numpy().astype(np.int64)
    print(f"steps={steps}: timesteps={timesteps.tolist()}; "
          f"{clipped}/{steps * x_T.numel()} model outputs outside [-1, 1]")
    for name, value in worst.items():
        print(f"    max |prev_sample - {name}| = {value:.3e}")
    out = {f"{k}_{steps}": np.stack(v).astype(np.float32) for k, v in rec.items()}
    out[f"timesteps_{steps}"] = timesteps
    out[f"x_T_{steps}"] = x_T.numpy().astype(np.float32)
    return out


def main() -> None:
    import diffusers
    from diffusers import DDIMScheduler, UNet2DModel  # noqa: F401  (UNet2DModel: the import must work)

    if diffusers.__version__ != "0.14.0":
        sys.exit(f"needs diffusers==0.14.0, found {diffusers.__version__}: run in the separate venv")

    torch.manual_seed(SEED)
    x_T = torch.randn(SHAPE)
    cond = torch.randn(SHAPE)
    scheduler = DDIMScheduler(prediction_type="sample")

    arrays: dict[str, np.ndarray] = {
        "alphas_cumprod": scheduler.alphas_cumprod.numpy().astype(np.float32),
        "final_alpha_cumprod": np.asarray(scheduler.final_alpha_cumprod, dtype=np.float32),
        "x_T": x_T.numpy().astype(np.float32),
        "cond": cond.numpy().astype(np.float32),
    }
    for steps in STEP_COUNTS:
        arrays.update(run(scheduler, steps, x_T, cond))

    meta = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": f"torch.manual_seed({SEED}); x_T = torch.randn{SHAPE}; cond = torch.randn{SHAPE}",
        "model_output_formula": MODEL_FORMULA,
        "step_call": "scheduler.step(model_output, t, x_t, eta=0).prev_sample",
        "step_counts": list(STEP_COUNTS),
        "timesteps": {str(n): arrays[f"timesteps_{n}"].tolist() for n in STEP_COUNTS},
        "scheduler_config": {k: v for k, v in dict(scheduler.config).items()},
        "generator_script": "tests/data/make_ddim_0_14_fixture.py",
    }
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    for key, value in arrays.items():
        if key != "meta":
            print(f"    {key}: {value.dtype} {value.shape}")


if __name__ == "__main__":
    main()

"""Stage-2 training throughput on cached latents: one optimizer step of the RDMs per call, Stage 1 frozen.

For each device and batch of clips, a step is what the trainer does with ``data.cache_latents``: the
`latentface.training.stage2.Stage2Objective` loss (released SNR weighting) of (B, T, latent_dim) texture and shape
latents already on the device, backward, gradient-norm clip 1.0 and Adam (lr 1e-4, weight decay 5e-4) over both
RDMs at the released width 128: the released recipe (`benchmarks/configs/stage2_voxceleb.toml`, one 16-frame clip
per step). Latents and weights are random (speed does not depend on their values). Throughput is frames (images)
per second: B * T over the median step time, after a warm-up; CUDA is synchronised after every step.

    python benchmarks/stage2_speed.py                              # CPU (+ CUDA if available), 1, 4 and 64 clips
    python benchmarks/stage2_speed.py --device cuda --batch-sizes 1 64 1024
    python benchmarks/stage2_speed.py --quick --device cpu --output /tmp/stage2.json   # smoke run

The markdown table goes to stdout, progress to stderr, and the JSON report (machine included) to ``--output``,
atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import harness
import torch
from harness import measure, publish, reports_errors, run

from latentface import LatentFace, LatentFaceConfig, Latents
from latentface.hub import weights_digest
from latentface.training.stage2 import Stage2Objective

RDM_WIDTH = 128
GRAD_CLIP = 1.0
QUICK = {"batch_sizes": [1], "clip_length": 4, "min_time": 0.1}


def stage2_step(device: torch.device, clips: int, clip_length: int) -> tuple[Callable[[], None], str]:
    """One training step of both RDMs on random cached latents of `clips` clips of `clip_length` frames.

    Args:
        device: where the step runs.
        clips: clips per step.
        clip_length: frames per clip.

    Returns:
        The step, a function of no arguments, and the SHA-256 digest of the (seeded random) weights it starts from.
    """
    torch.manual_seed(0)
    model = LatentFace(LatentFaceConfig(rdm_width=RDM_WIDTH)).to(device).train()
    digest = weights_digest(model)
    assert model.albedo_rdm is not None and model.depth_rdm is not None
    for name, module in model.named_children():
        module.requires_grad_(name in ("albedo_rdm", "depth_rdm"))
    objective = Stage2Objective(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-4)
    gen = torch.Generator().manual_seed(1)
    dim = model.config.latent_dim
    latents = Latents(texture=torch.rand(clips, clip_length, dim, generator=gen).to(device),
                      shape=torch.rand(clips, clip_length, dim, generator=gen).to(device))
    noise = torch.Generator(device=device).manual_seed(2)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        objective(latents, generator=noise, reconstruction=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()

    return step, digest


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """Machine, settings and the table, as markdown."""
    m, s = report["machine"], report["settings"]
    lines = [
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable of {m['cpu_count']} logical CPUs, "
         f"torch {m['torch']} ({m['torch_threads']} threads)"
         + (f", GPU {m['gpu']} (CUDA {m['cuda']})" if m["gpu"] else ", no GPU used")),
        (f"**Settings**: float32, RDM width {RDM_WIDTH}, clips of {s['clip_length']} frames, median step time over "
         f"at least {s['min_time']} s per point; images/s = frames per step / median step time (higher is better)."),
        "",
        "| device | clips per step | frames per step | step (ms) | images/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['device']} | {r['clips']} | {r['batch_size']} | {_fmt(r['step']['ms_per_batch_median'])} "
                     f"| {_fmt(r['step']['images_per_s'])} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    harness.add_devices_option(p)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 64],
                   help="clips per step (the released recipe: 1)")
    p.add_argument("--clip-length", type=int, default=16, help="frames per clip (the released recipe: 16)")
    p.add_argument("--min-time", type=float, default=2.0, help="minimum measured seconds per point (after warm-up)")
    harness.add_run_options(p, "stage2-speed")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 clip of 4 frames, min time 0.1 s")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if min(args.batch_sizes) < 1 or args.clip_length < 1 or args.min_time <= 0:
        p.error("batch sizes, --clip-length and --min-time must be positive")
    return args


@reports_errors()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    devices = harness.select_devices(args.device, args.threads)
    report: dict[str, Any] = {
        "machine": harness.machine_info(devices),
        "settings": {"devices": [str(d) for d in devices], "batch_sizes": args.batch_sizes,
                     "clip_length": args.clip_length, "rdm_width": RDM_WIDTH, "min_time": args.min_time,
                     "quick": args.quick},
        "results": [],
    }
    started = time.perf_counter()
    for device in devices:
        for clips in args.batch_sizes:
            frames = clips * args.clip_length
            step, digest = stage2_step(device, clips, args.clip_length)
            point = measure(step, device, frames, args.min_time, args.min_time / 4)
            print(f"[{device} {clips} clips] {point['ms_per_batch_median']:.1f} ms per step, "
                  f"{point['images_per_s']:.0f} images/s", file=sys.stderr, flush=True)
            report["results"].append({"device": str(device), "clips": clips, "batch_size": frames, "step": point,
                                      "weights_sha256": digest})
    report["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

"""Does a device (CUDA) compute what the CPU computes? `encode`, `disentangle` and `render` side by side.

A random-weight model at the released widths (`LatentFaceConfig()`, RDM width 128) runs the same seeded images
on the CPU and on ``--device``: `LatentFace.encode`, `LatentFace.disentangle` with the same start noise, and
`LatentFace.render` in the input view, everything in float32 with TF32 disabled on the device. Reported: the
largest absolute difference of every output (codes, identity latents, canonical maps, posed image and depth over
the pixels that both masks cover) and the fraction of pixels whose mask differs. The check passes when every
difference is at most ``--tolerance`` and at most ``--mask-tolerance`` of the pixels differ in the mask.

    python benchmarks/cpu_vs_device.py --device cuda
    python benchmarks/cpu_vs_device.py --device cpu --batch-size 2 --output /tmp/eq.json   # smoke run

The markdown table goes to stdout and the JSON report (machine included) to ``--output``, atomically. Exit
status: 0 when the check passes, 1 when it does not, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import harness
import torch
from harness import exact_float32, publish, reports_errors, run
from torch import Tensor

from latentface import LatentFace, LatentFaceConfig, Latents

VALUES = ("codes.texture", "codes.shape", "codes.light", "codes.pose", "identity.texture", "identity.shape",
          "render.albedo", "render.canonical_depth", "render.shading", "render.image", "render.depth")
"""Compared outputs; ``render.image`` and ``render.depth`` over the pixels both masks cover."""


def outputs(model: LatentFace, images: Tensor, noise: Latents) -> dict[str, Tensor]:
    """Every compared output of `model` (on its device) for `images` and RDM start `noise`, moved to the CPU.

    Args:
        model: the model, in eval mode.
        images: (B, 3, 64, 64) in [0, 1], on the CPU.
        noise: the RDM start noise, (B, ``model.config.latent_dim``) each, on the CPU.

    Returns:
        Name -> CPU tensor: the `VALUES` and ``render.mask``.
    """
    device = model.device
    with torch.inference_mode(), exact_float32():
        codes = model.encode(images.to(device))
        parts = model.disentangle(codes, noise=Latents(texture=noise.texture.to(device), shape=noise.shape.to(device)))
        rendering = model.render(codes, view="input")
    found = {
        "codes.texture": codes.texture, "codes.shape": codes.shape, "codes.light": codes.light,
        "codes.pose": codes.pose,
        "identity.texture": parts.identity.texture, "identity.shape": parts.identity.shape,
        "render.albedo": rendering.albedo, "render.canonical_depth": rendering.canonical_depth,
        "render.shading": rendering.shading, "render.image": rendering.image, "render.depth": rendering.depth,
        "render.mask": rendering.mask,
    }
    return {name: value.cpu() for name, value in found.items()}


def compare(cpu: dict[str, Tensor], device: dict[str, Tensor]) -> dict[str, Any]:
    """Largest absolute difference per value (posed maps over the pixels both masks cover) and mask disagreement.

    Args:
        cpu: `outputs` on the CPU.
        device: `outputs` on the device.

    Returns:
        ``max_abs_diff`` (name -> float) and ``mask_mismatch`` (fraction of pixels).
    """
    both = cpu["render.mask"] & device["render.mask"]
    diffs = {}
    for name in VALUES:
        diff = (cpu[name].double() - device[name].double()).abs()
        if name == "render.image":
            diff = diff * both[:, None]
        elif name == "render.depth":
            diff = diff * both
        diffs[name] = diff.max().item()
    mismatch = (cpu["render.mask"] != device["render.mask"]).double().mean().item()
    return {"max_abs_diff": diffs, "mask_mismatch": mismatch}


def markdown(report: dict[str, Any]) -> str:
    """Machine, verdict and the differences, as markdown."""
    m, s, r = report["machine"], report["settings"], report["results"]
    lines = [
        (f"**Machine**: {m['cpu_model']}, torch {m['torch']}"
         + (f", GPU {m['gpu']} (CUDA {m['cuda']})" if m["gpu"] else ", no GPU used")),
        (f"**Settings**: CPU against {s['device']}, batch {s['batch_size']}, float32, TF32 off, random weights at the "
         f"released widths; tolerance {s['tolerance']:g}, mask tolerance {s['mask_tolerance']:g}."),
        f"**Result**: {'pass' if r['passed'] else 'FAIL'}",
        "",
        "| output | max abs diff |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.2e} |" for name, value in r["max_abs_diff"].items()]
    lines.append(f"| render.mask (fraction of pixels that differ) | {r['mask_mismatch']:.2e} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    harness.add_model_options(p, weights=None, device="cuda", device_help="the device compared with the CPU")
    p.add_argument("--batch-size", type=int, default=16, help="images compared")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, images and noise")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest accepted absolute difference")
    p.add_argument("--mask-tolerance", type=float, default=1e-3,
                   help="largest accepted fraction of pixels whose mask differs")
    harness.add_run_options(p, "cpu-vs-device")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.tolerance < 0 or args.mask_tolerance < 0:
        p.error("--batch-size must be positive and the tolerances non-negative")
    return args


@reports_errors()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    found = harness.select_devices([args.device], args.threads)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    model = LatentFace(LatentFaceConfig()).eval()
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.batch_size, 3, 64, 64, generator=gen)
    dim = model.config.latent_dim
    noise = Latents(texture=torch.randn(args.batch_size, dim, generator=gen),
                    shape=torch.randn(args.batch_size, dim, generator=gen))
    on_cpu = outputs(model, images, noise)
    on_device = outputs(model.to(found[0]), images, noise)
    results = compare(on_cpu, on_device)
    results["passed"] = (max(results["max_abs_diff"].values()) <= args.tolerance
                         and results["mask_mismatch"] <= args.mask_tolerance)
    report = {
        "machine": harness.machine_info(found),
        "settings": {"device": str(found[0]), "batch_size": args.batch_size, "seed": args.seed,
                     "tolerance": args.tolerance, "mask_tolerance": args.mask_tolerance},
        "model": harness.model_record(model.cpu()),
        "results": results,
        "total_seconds": time.perf_counter() - started,
    }
    publish(report, markdown(report), args.output)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    run(main)

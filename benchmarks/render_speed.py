"""Speed of the differentiable renderer, native against PyTorch3D, and its share of a Stage-1 training step.

For each device, backend, image size S and batch size B it times, on B posed S x S depth meshes (Unsup3D's grid
mesh: S*S vertices, 2 (S-1)^2 triangles, random smooth depth and a random pose within +-30 degrees):

* ``raster``: rasterizing the screen-space meshes (z-buffer, barycentrics, depth);
* ``warp``: the whole input-view reconstruction of `latentface.render.warp` (mesh, pose, projection,
  rasterization, clamp, inverse warp, ``grid_sample`` of a canonical image);

each forward only (under ``torch.no_grad``) and forward+backward (gradients to the vertices, or to the canonical
depth and image). Backends: ``native`` (pure PyTorch) and ``pytorch3d`` (its ``rasterize_meshes``, when
installed). Then, on the same device, one Stage-1 training step (`latentface.training.stage1.Stage1Objective`
with the released network widths, Adam) is timed, per ``--step-batch`` and ``--step-perceptual`` setting (the
VGG16 perceptual term with random weights, or none), against the image formation alone
(`latentface.render.form_image` with the flip branch, forward+backward) on the same batch.

Each point: warm-up (one call at least), then calls until ``--min-time`` seconds; the median call time is
reported. The markdown table goes to stdout, the JSON report (machine included) to ``--output``, atomically (after
every point too, with ``"complete": false`` until the run ends).

Examples::

    python benchmarks/render_speed.py                         # CPU (+ CUDA if available), both backends if installed
    python benchmarks/render_speed.py --device cuda --sizes 64 128 --batch-sizes 64 128
    python benchmarks/render_speed.py --device cuda --step-batch 64 256 --step-perceptual random none
    python benchmarks/render_speed.py --quick --device cpu --output /tmp/render.json   # smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import harness
import torch
from harness import ScriptError, measure, publish, reports_errors, run, write_json_atomic
from torch import Tensor

from latentface import LatentFace, LatentFaceConfig
from latentface.hub import weights_digest
from latentface.render import form_image
from latentface.render.backends import RENDERERS, get_rasterizer, pytorch3d_available
from latentface.render.camera import intrinsics
from latentface.render.mesh import depth_to_mesh
from latentface.render.pose import project, rotation_matrix, transform_points
from latentface.render.warp import FAR, sample_canonical, warp_view
from latentface.training.losses import PerceptualLoss, vgg16_relu3_3
from latentface.training.stage1 import Stage1Objective

CONFIG = LatentFaceConfig(rdm_width=None)
MEASURES = ("raster_fwd", "raster_fwd_bwd", "warp_fwd", "warp_fwd_bwd")
QUICK = {"sizes": [32], "batch_sizes": [2], "pytorch3d_cpu_batch_sizes": [2], "min_time": 0.1, "step_batch": [2]}
PERCEPTUAL = ("random", "none")
"""Stage-1 step settings: the VGG16 perceptual term with random weights (its cost does not depend on them), or none
(``lam_perc = 0``: no VGG16 runs)."""


def scene(batch: int, size: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random smooth canonical depth (B, S, S) in the depth range, poses (R, T) and a canonical image."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 1, 6, 6, generator=g)
    raw = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[:, 0]
    depth = 1.0 + 0.08 * raw.tanh()
    angles = (torch.rand(batch, 3, generator=g) * 2 - 1) * math.radians(30.0)
    rot = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2] / 3)
    trans = (torch.rand(batch, 3, generator=g) * 2 - 1) * torch.tensor([0.05, 0.05, 0.0])
    image = torch.rand(batch, 3, size, size, generator=g)
    return depth.to(device), rot.to(device), trans.to(device), image.to(device)


def screen_mesh(depth: Tensor, rot: Tensor, trans: Tensor) -> tuple[Tensor, Tensor]:
    """The posed depth meshes in screen space, as `latentface.render.warp.posed_depth` rasterizes them."""
    verts, faces = depth_to_mesh(depth, CONFIG.fov)
    k = intrinsics(depth.shape[-1], CONFIG.fov, depth.device, depth.dtype)
    return project(transform_points(verts, rot, trans, CONFIG.rotation_center_depth), k), faces


def render_fns(backend: str, batch: int, size: int, device: torch.device) -> dict[str, Callable[[], object]]:
    """The four timed functions of one backend, size and batch."""
    rasterize = get_rasterizer(backend)
    depth, rot, trans, image = scene(batch, size, device)
    screen, faces = screen_mesh(depth, rot, trans)

    def raster_fwd() -> object:
        with torch.no_grad():
            return rasterize(screen, faces, size, size, background=FAR)

    def raster_fwd_bwd() -> None:
        verts = screen.detach().requires_grad_()
        frags = rasterize(verts, faces, size, size, background=FAR)
        (frags.zbuf.where(frags.mask, 0).sum() + frags.bary.sum()).backward()

    def warp(d: Tensor, im: Tensor) -> Tensor:
        view = warp_view(d, rot, trans, CONFIG.fov, CONFIG.rotation_center_depth, CONFIG.min_depth, CONFIG.max_depth,
                         renderer=backend)
        return sample_canonical(im, view) * view.mask[:, None]

    def warp_fwd() -> object:
        with torch.no_grad():
            return warp(depth, image)

    def warp_fwd_bwd() -> None:
        d, im = depth.detach().requires_grad_(), image.detach().requires_grad_()
        warp(d, im).sum().backward()

    return {"raster_fwd": raster_fwd, "raster_fwd_bwd": raster_fwd_bwd, "warp_fwd": warp_fwd,
            "warp_fwd_bwd": warp_fwd_bwd}


def stage1_share(device: torch.device, batch: int, min_time: float, warmup_time: float, backend: str,
                 perceptual: str = "random") -> dict[str, Any]:
    """Time one Stage-1 training step and the image formation alone on the same batch (64 x 64 input).

    Args:
        device: where the step runs.
        batch: images per step.
        min_time: minimum measured seconds per timing.
        warmup_time: warm-up seconds per timing.
        backend: the rasterizer backend.
        perceptual: ``"random"`` (VGG16 perceptual term, random weights) or ``"none"`` (``lam_perc = 0``).

    Returns:
        ``step`` and ``formation_fwd_bwd`` timings (`measure`), ``share_of_step``, ``added_to_rest_of_step`` and
        ``weights_sha256``, the digest of the (seeded random) weights the step starts from.
    """
    torch.manual_seed(0)
    model = LatentFace(CONFIG, renderer=backend).to(device).train()
    digest = weights_digest(model)
    if perceptual == "random":
        objective = Stage1Objective(model, PerceptualLoss(vgg16_relu3_3("random"))).to(device)
    else:
        objective = Stage1Objective(model, None, lam_perc=0.0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-4)
    size = CONFIG.image_size
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        objective(x).loss.backward()
        optimizer.step()

    with torch.no_grad():
        codes = model.encode_batch(x)
        albedo, depth = model.decode(codes)

    def formation() -> None:
        a, d = albedo.detach().requires_grad_(), depth.detach().requires_grad_()
        out = form_image(a, d, codes.light, codes.pose, CONFIG, flip=True, renderer=backend)
        (out.image * out.mask[:, None]).sum().backward()

    result = {"step": measure(step, device, batch, min_time, warmup_time),
              "formation_fwd_bwd": measure(formation, device, batch, min_time, warmup_time)}
    render_ms, step_ms = result["formation_fwd_bwd"]["ms_per_batch_median"], result["step"]["ms_per_batch_median"]
    result["share_of_step"] = render_ms / step_ms
    result["added_to_rest_of_step"] = render_ms / max(step_ms - render_ms, 1e-9)
    result["weights_sha256"] = digest
    return result


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _fmt_ms(point: dict[str, float]) -> str:
    return _fmt(point["ms_per_batch_median"])


def markdown(report: dict[str, Any]) -> str:
    """Machine, settings and the two tables, as markdown."""
    m, s = report["machine"], report["settings"]
    lines = [
        (f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable of {m['cpu_count']} logical CPUs, "
         f"torch {m['torch']} ({m['torch_threads']} threads)"
         + (f", GPU {m['gpu']} (CUDA {m['cuda']})" if m["gpu"] else ", no GPU used")
         + (f", PyTorch3D {m['pytorch3d']}" if m["pytorch3d"] else ", PyTorch3D not installed")),
        (f"**Settings**: float32, median of calls over at least {s['min_time']} s per point; milliseconds per batch "
        "(lower is better)."),
        "",
        "| device | backend | size | batch | raster fwd | raster fwd+bwd | warp fwd | warp fwd+bwd |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        cells = [r["device"], r["backend"], str(r["size"]), str(r["batch_size"])]
        cells += [f"{_fmt_ms(r[name])} ({_fmt(r[name]['ms_per_batch_median'] / r['batch_size'])})" for name in MEASURES]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", ("| device | backend | perceptual | batch | Stage-1 step (ms) | images/s | image formation fwd+bwd "
              "(ms) | share of step | added to the rest |"), "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["stage1"]:
        lines.append(f"| {r['device']} | {r['backend']} | {r['perceptual']} | {r['batch_size']} | "
                     f"{_fmt_ms(r['step'])} | {_fmt(r['step']['images_per_s'])} | "
                     f"{_fmt_ms(r['formation_fwd_bwd'])} | {100 * r['share_of_step']:.0f}% | "
                     f"{100 * r['added_to_rest_of_step']:.0f}% |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    default_backends = ["native"] + (["pytorch3d"] if pytorch3d_available() else [])
    p = harness.new_parser(__doc__)
    harness.add_devices_option(p)
    p.add_argument("--backends", nargs="+", default=default_backends, choices=RENDERERS,
                   help="rasterizer backends (default: native, and pytorch3d when installed)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes (grid mesh of S x S)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128], help="meshes per call")
    p.add_argument("--pytorch3d-cpu-batch-sizes", type=int, nargs="+", default=[8],
                   help="meshes per call for PyTorch3D on the CPU, whose naive rasterizer tests every face at every "
                   "pixel (its time is linear in the batch; compare per mesh)")
    p.add_argument("--step-batch", type=int, nargs="+", default=[64],
                   help="batches of the Stage-1 step (the paper's 64)")
    p.add_argument("--step-perceptual", nargs="+", choices=PERCEPTUAL, default=["random"],
                   help="Stage-1 steps with the VGG16 perceptual term (random weights) and/or without it (none)")
    p.add_argument("--min-time", type=float, default=2.0, help="minimum measured seconds per point (after warm-up)")
    harness.add_run_options(p, "render-speed")
    p.add_argument("--quick", action="store_true", help="smoke run: size 32, batch 2, step batch 2, min time 0.1 s")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    batches = args.batch_sizes + args.pytorch3d_cpu_batch_sizes
    if min(args.sizes) < 2 or min(batches) < 1 or min(args.step_batch) < 1 or args.min_time <= 0:
        p.error("sizes must be >= 2 and batch sizes and --min-time positive")
    return args


@reports_errors()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    devices = harness.select_devices(args.device, args.threads)
    for backend in args.backends:
        try:
            get_rasterizer(backend)
        except ImportError as err:
            raise ScriptError(str(err)) from err
    machine = harness.machine_info(devices)
    if pytorch3d_available():
        import pytorch3d

        machine["pytorch3d"] = pytorch3d.__version__
    else:
        machine["pytorch3d"] = None
    warmup = args.min_time / 4
    report: dict[str, Any] = {
        "machine": machine,
        "settings": {k: getattr(args, k) for k in ("backends", "sizes", "batch_sizes", "pytorch3d_cpu_batch_sizes",
                                                   "step_batch", "step_perceptual", "min_time", "quick")}
        | {"devices": [str(d) for d in devices]},
        "complete": False,
        "results": [],
        "stage1": [],
    }
    started = time.perf_counter()
    for device in devices:
        for backend in args.backends:
            cpu_pytorch3d = backend == "pytorch3d" and device.type == "cpu"
            for size in args.sizes:
                for batch in args.pytorch3d_cpu_batch_sizes if cpu_pytorch3d else args.batch_sizes:
                    fns = render_fns(backend, batch, size, device)
                    point = {name: measure(fns[name], device, batch, args.min_time, warmup) for name in MEASURES}
                    timings = ", ".join(f"{k} {v['ms_per_batch_median']:.1f} ms" for k, v in point.items())
                    print(f"[{device} {backend} {size}px x{batch}] {timings}", file=sys.stderr, flush=True)
                    report["results"].append({"device": str(device), "backend": backend, "size": size,
                                              "batch_size": batch, **point})
                    write_json_atomic(args.output, report)
            for perceptual in args.step_perceptual:
                for batch in args.step_batch:
                    share = stage1_share(device, batch, args.min_time, warmup, backend, perceptual)
                    print(f"[{device} {backend} perceptual {perceptual} x{batch}] Stage-1 step "
                          f"{share['step']['ms_per_batch_median']:.0f} ms, image formation "
                          f"{100 * share['share_of_step']:.0f}% of it", file=sys.stderr, flush=True)
                    report["stage1"].append({"device": str(device), "backend": backend, "perceptual": perceptual,
                                             "batch_size": batch, **share})
                    write_json_atomic(args.output, report)
    report["complete"] = True
    report["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

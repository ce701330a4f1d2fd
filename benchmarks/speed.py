"""Throughput benchmark of LatentFace, with the released code's equivalent as a baseline.

For each device, RDM width and batch size it measures images per second of:

* ``encode``: `LatentFace.encode` (preprocessing, texture/shape/light/pose encoders);
* ``encode_disentangle``: `encode` followed by `LatentFace.disentangle` (two 5-step RDM samplings);
* ``features_fer`` and ``features_verification``: `LatentFace.features` for both protocols
  (verification also runs the horizontally flipped image);
* ``released_encode_disentangle``: what the official code (``model/model_expr.py``, ``identity_test.py``)
  does for one feature with the same weights: the full texture and shape encoder-decoders (encoder and
  decoder, keeping only the code), then per latent a diffusers ``UNet2DModel`` on (B, latent_dim, 1, 1) tensors
  driven by ``DDIMScheduler(prediction_type="sample")`` for 5 steps.

Each point is timed for every requested dtype (``--dtype float32 bfloat16``: parameters and inputs cast) and
compilation setting (``--compile none inductor``: eager, then every network `torch.compile`-d with that backend).

Weights are random (speed does not depend on their values). Before timing, each device/width checks once
that the released equivalent and the native model give the same identity latents for the same start noise
(against the native ``ddim`` sampler, which current diffusers implements; the ``official`` sampler reproduces
diffusers 0.14.0, whose x0-prediction step differs) and aborts if they differ by more than 1e-3; the check
records the SHA-256 digest of the weights (seeded by the width, the same for every variant).

Everything runs under `torch.inference_mode()`; each point is warmed up and then repeated until
``--min-time`` seconds have passed (at least one call; CUDA is synchronised after every call). The
markdown table goes to stdout, progress to stderr, and the full results to a JSON file (written atomically,
after every point too, with ``"complete": false`` until the run ends: an interrupted run keeps what it measured).

Needs diffusers (``pip install -e .[dev]``). Examples::

    python benchmarks/speed.py                                # CPU (+ CUDA if available), width 128
    python benchmarks/speed.py --rdm-widths 128 1024 --device cuda --batch-sizes 1 64 256 1024
    python benchmarks/speed.py --device cuda --dtype float32 bfloat16 --compile none inductor
    python benchmarks/speed.py --quick --device cpu --output /tmp/speed.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import harness
import torch
from harness import ScriptError, exact_float32, measure, publish, reports_errors, run, write_json_atomic
from torch import Tensor, nn

from latentface import LatentFace, LatentFaceConfig, Latents
from latentface.convert import rdm_to_diffusers
from latentface.hub import weights_digest

MEASURES = ("encode", "encode_disentangle", "features_fer", "features_verification", "released_encode_disentangle")
"""Timed functions, in table order."""
CHECK_TOLERANCE = 1e-3
CHECK_BATCH = 4
STEPS = 5
QUICK_BATCH_SIZES = (1, 4)
QUICK_MIN_TIME = 0.2
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def machine_info(devices: Sequence[torch.device]) -> dict[str, Any]:
    """Description of this machine and software stack, with the diffusers version."""
    import diffusers

    return {**harness.machine_info(devices), "diffusers": diffusers.__version__}


class Released:
    """The released code's feature path for the weights of a `LatentFace` model.

    Stage 1 reuses the model's own texture and shape encoder-decoders with their full forward (encoder and
    decoder, as ``netA(x*2-1)[0]`` runs them); Stage 2 uses diffusers ``UNet2DModel`` denoisers of the released
    configuration loaded with the model's RDM weights (strict), and ``DDIMScheduler(prediction_type="sample")``.
    """

    def __init__(self, model: LatentFace) -> None:
        from diffusers import DDIMScheduler, UNet2DModel

        assert model.albedo_rdm is not None and model.depth_rdm is not None
        self.model = model
        width = model.albedo_rdm.width
        self.unets: list[nn.Module] = []
        for rdm in (model.albedo_rdm, model.depth_rdm):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                unet = UNet2DModel(
                    sample_size=1, in_channels=512, out_channels=256, layers_per_block=2, block_out_channels=(width,),
                    down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
                )
            unet.load_state_dict(rdm_to_diffusers(rdm.state_dict()), strict=True)
            self.unets.append(unet.eval().to(model.device, model.dtype))
        self.scheduler = DDIMScheduler(prediction_type="sample")
        self.scheduler.set_timesteps(STEPS)

    def to(self, *args: Any, **kwargs: Any) -> Released:
        """Move or cast the UNets (as `nn.Module.to`); the model is moved by its owner."""
        self.unets = [u.to(*args, **kwargs) for u in self.unets]
        return self

    def latents(self, x: Tensor, noise: Sequence[Tensor] | None = None,
                use_clipped_model_output: bool = False) -> list[tuple[Tensor, Tensor]]:
        """(code, identity) for texture and shape of images `x` (B, 3, 64, 64) in [0, 1], each (B, D, 1, 1) with D
        the model's ``config.latent_dim``.

        Args:
            x: images in [0, 1] on the model's device.
            noise: start noise per latent, (B, D, 1, 1) each; drawn as the released code does when omitted.
            use_clipped_model_output: passed to ``DDIMScheduler.step`` (the released code leaves it False).
        """
        out = []
        nets = ((self.model.albedo_net, self.unets[0]), (self.model.depth_net, self.unets[1]))
        for i, (net, unet) in enumerate(nets):
            code = net(x * 2 - 1)[0][:, :, None, None]  # full encoder-decoder forward, keep the code
            neutral = torch.randn(code.shape).to(code.device, code.dtype) if noise is None else noise[i]
            for t in self.scheduler.timesteps:
                model_output = unet(torch.cat([neutral, code], dim=1), t).sample
                neutral = self.scheduler.step(model_output, t, neutral, eta=0,
                                              use_clipped_model_output=use_clipped_model_output).prev_sample
            out.append((code, neutral))
        return out

    def fer_feature(self, x: Tensor) -> Tensor:
        """The released FER embedding [texture - identity, texture, shape - identity, shape], (B, 4 D)."""
        (albedo, neutral_a), (shape, neutral_d) = self.latents(x)
        return torch.cat([(albedo - neutral_a).flatten(1), albedo.flatten(1), (shape - neutral_d).flatten(1),
                          shape.flatten(1)], dim=-1)


def check_equivalence(model: LatentFace, released: Released) -> float:
    """Largest difference between released-equivalent and native (``ddim``) codes and identity latents.

    The model and UNets must be in float32. Current diffusers derives the noise from the unclipped x0 unless
    ``use_clipped_model_output=True``; the textbook DDIM step (our ``ddim``) uses the clipped one, so the check
    passes that flag (same cost; random weights do push x0 past the clip range).
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(CHECK_BATCH, 3, 64, 64, generator=gen).to(model.device)
    noise = [torch.randn(CHECK_BATCH, 256, generator=gen).to(model.device) for _ in range(2)]
    with exact_float32():
        ref = released.latents(x, [n[:, :, None, None] for n in noise], use_clipped_model_output=True)
        codes = model.encode(x)
        native = model.disentangle(codes, noise=Latents(texture=noise[0], shape=noise[1]), sampler="ddim")
    pairs = [
        (ref[0][0], codes.texture), (ref[1][0], codes.shape),
        (ref[0][1], native.identity.texture), (ref[1][1], native.identity.shape),
    ]
    return max((a.flatten(1).float() - b.float()).abs().max().item() for a, b in pairs)


def compile_networks(model: LatentFace, released: Released, backend: str | Callable[..., Any]) -> None:
    """`torch.compile` (in place) every network the timed functions call, native and released; the Python around
    them (input checks, preprocessing, the samplers' loops) stays eager.

    Args:
        model: the native model (its encoders, decoders and RDMs are compiled).
        released: the released equivalent (its UNets are compiled; its Stage 1 is the model's).
        backend: a `torch.compile` backend (``inductor``, ``aot_eager``, ... or a backend function).
    """
    assert model.albedo_rdm is not None and model.depth_rdm is not None
    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):  # torch >= 2.6
        # past dynamo's limit of recompilations a network would silently run eager: fail instead
        torch._dynamo.config.fail_on_recompile_limit_hit = True
    for net in (model.albedo_net, model.depth_net):
        net.encoder.compile(backend=backend)
        net.decoder.compile(backend=backend)
    for net in (model.light_net, model.view_net, model.albedo_rdm, model.depth_rdm):
        net.compile(backend=backend)
    released.unets = [torch.compile(unet, backend=backend) for unet in released.unets]


def build(width: int, device: torch.device, dtype: torch.dtype = torch.float32, channels_last: bool = False,
          backend: str = "none") -> tuple[LatentFace, Released]:
    """Random-weight model (seeded by the width: every variant holds the same weights) and its released equivalent
    on `device`, cast to `dtype`, optionally channels_last, compiled unless `backend` is ``"none"``."""
    torch.manual_seed(width)
    model = LatentFace(LatentFaceConfig(rdm_width=width)).eval().to(device)
    released = Released(model)
    model.to(dtype)
    released.to(dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        released.to(memory_format=torch.channels_last)
    if backend != "none":
        compile_networks(model, released, backend)
    return model, released


def bench_point(model: LatentFace, released: Released, device: torch.device, batch: int, dtype: torch.dtype,
                channels_last: bool, min_time: float, warmup_time: float) -> dict[str, Any]:
    """All measures for one batch size, with the derived speed-ups and RDM share."""
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch)).to(device)
    x_released = x.to(dtype)
    if channels_last:
        x_released = x_released.contiguous(memory_format=torch.channels_last)
    fns: dict[str, Callable[[], object]] = {
        "encode": lambda: model.encode(x),
        "encode_disentangle": lambda: model.disentangle(model.encode(x)),
        "features_fer": lambda: model.features(x, "fer"),
        "features_verification": lambda: model.features(x, "verification"),
        "released_encode_disentangle": lambda: released.fer_feature(x_released),
    }
    point: dict[str, Any] = {}
    for name in MEASURES:
        with torch.inference_mode():
            point[name] = measure(fns[name], device, batch, min_time, warmup_time)
        print(f"    {name:<28} {point[name]['images_per_s']:10.1f} img/s  ({point[name]['calls']} calls)",
              file=sys.stderr, flush=True)

    def per_image(name: str) -> float:
        return 1.0 / point[name]["images_per_s"]

    point["speedup_vs_encode_disentangle"] = per_image("released_encode_disentangle") / per_image("encode_disentangle")
    point["speedup_vs_features_fer"] = per_image("released_encode_disentangle") / per_image("features_fer")
    point["rdm_share"] = (per_image("encode_disentangle") - per_image("encode")) / per_image("encode")
    return point


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """Machine description and the results table, as markdown."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"**Machine**: {m['cpu_model']}, {m['cpu_usable']} usable of {m['cpu_count']} logical CPUs, "
        f"torch {m['torch']} ({m['torch_threads']} threads), diffusers {m['diffusers']}"
        + (f", GPU {m['gpu']} (CUDA {m['cuda']})" if m["gpu"] else ", no GPU used"),
        (f"**Settings**: channels_last {s['channels_last']}, min time {s['min_time']} s per point, "
        f"{STEPS} DDIM steps, random weights; compile `none` is eager, otherwise every network is `torch.compile`-d "
        "with that backend. Throughput in images/s = batch / median call time (higher is better)."),
        "",
        ("| device | RDM width | dtype | compile | batch | encode | encode+disentangle | features fer "
         "| features verification | released encode+disentangle | speed-up vs enc+dis | speed-up vs fer | RDM share |"),
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        cells = [r["device"], str(r["rdm_width"]), r["dtype"], r["compile"], str(r["batch_size"])]
        cells += [_fmt(r[name]["images_per_s"]) for name in MEASURES]
        cells += [f"{r['speedup_vs_encode_disentangle']:.1f}x", f"{r['speedup_vs_features_fer']:.1f}x",
                  f"{100 * r['rdm_share']:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    checks = ", ".join(f"{c['device']}/w{c['rdm_width']}: {c['max_abs_diff']:.1e}" for c in report["checks"])
    lines += ["", f"Equivalence check (released vs native `ddim`, max abs diff): {checks}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256], help="batch sizes to time")
    harness.add_devices_option(p)
    p.add_argument("--rdm-widths", type=int, nargs="+", default=[128], choices=[128, 1024],
                   help="RDM widths (128: released model, 1024: first release)")
    p.add_argument("--min-time", type=float, default=2.0, help="minimum measured seconds per point (after warm-up)")
    p.add_argument("--warmup-time", type=float, default=None,
                   help="warm-up seconds per point, at least one call (default: a quarter of --min-time)")
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["float32"],
                   help="parameter and input dtypes to time")
    p.add_argument("--compile", nargs="+", default=["none"], metavar="BACKEND",
                   help="compilation settings to time, in order: none (eager) or a torch.compile backend "
                   "(inductor, aot_eager, ...); e.g. --compile none inductor")
    p.add_argument("--channels-last", action="store_true", help="convert models and released inputs to channels_last")
    harness.add_run_options(p, "speed")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: batch sizes {' '.join(map(str, QUICK_BATCH_SIZES))}, min time {QUICK_MIN_TIME} s")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.min_time = list(QUICK_BATCH_SIZES), QUICK_MIN_TIME
    if args.warmup_time is None:
        args.warmup_time = args.min_time / 4
    if min(args.batch_sizes) < 1 or args.min_time <= 0:
        p.error("batch sizes and --min-time must be positive")
    backends = torch.compiler.list_backends(exclude_tags=())
    unknown = [b for b in args.compile if b != "none" and b not in backends]
    if unknown:
        p.error(f"unknown --compile backend(s) {unknown}: none or one of {backends}")
    return args


@reports_errors()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import diffusers  # noqa: F401
    except ImportError as err:
        raise ScriptError("benchmarks/speed.py needs diffusers for the released-code baseline: "
                          "pip install 'diffusers>=0.30'") from err
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # silences a dtype-cast notice on every UNet `.to()`
    devices = harness.select_devices(args.device, args.threads)
    report: dict[str, Any] = {
        "machine": machine_info(devices),
        "settings": {
            "batch_sizes": args.batch_sizes, "devices": [str(d) for d in devices], "rdm_widths": args.rdm_widths,
            "min_time": args.min_time, "warmup_time": args.warmup_time, "dtypes": args.dtype,
            "compile": args.compile, "channels_last": args.channels_last, "steps": STEPS, "quick": args.quick,
        },
        "complete": False,
        "checks": [],
        "results": [],
    }
    started = time.perf_counter()
    for device in devices:
        for width in args.rdm_widths:
            model, released = build(width, device)
            with torch.inference_mode():
                diff = check_equivalence(model, released)
            print(f"[{device} width {width}] released vs native (ddim) max abs diff {diff:.2e}", file=sys.stderr,
                  flush=True)
            report["checks"].append({"device": str(device), "rdm_width": width, "max_abs_diff": diff,
                                     "weights_sha256": weights_digest(model)})
            if not diff <= CHECK_TOLERANCE:
                print(f"equivalence check failed: {diff:.3e} > {CHECK_TOLERANCE}", file=sys.stderr)
                return 1
            for backend in args.compile:
                for dtype in args.dtype:
                    model, released = build(width, device, DTYPES[dtype], args.channels_last, backend)
                    for batch in args.batch_sizes:
                        print(f"  {dtype}, compile {backend}, batch {batch}", file=sys.stderr, flush=True)
                        point = bench_point(model, released, device, batch, DTYPES[dtype], args.channels_last,
                                            args.min_time, args.warmup_time)
                        report["results"].append({"device": str(device), "rdm_width": width, "dtype": dtype,
                                                  "compile": backend, "batch_size": batch, **point})
                        write_json_atomic(args.output, report)
                    del model, released
                    torch._dynamo.reset()  # the next variant compiles afresh
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    report["complete"] = True
    report["total_seconds"] = time.perf_counter() - started
    publish(report, markdown(report), args.output)
    return 0


if __name__ == "__main__":
    run(main)

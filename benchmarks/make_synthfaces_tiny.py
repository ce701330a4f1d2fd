"""Build the bundled `synthfaces-tiny` weights: train both stages on SynthFaces, score them, write the card.

    python benchmarks/make_synthfaces_tiny.py                 # about three hours on 2 CPU cores
    python benchmarks/make_synthfaces_tiny.py --work runs     # where the training runs go (reused if complete)
    python benchmarks/make_synthfaces_tiny.py --set stage1:optim.max_steps=40000 --set stage1:optim.batch_size=128
                                                              # any config value of a phase, e.g. for a GPU

Steps: the training phases `PHASES` with `benchmarks/configs/synthfaces_tiny_<phase>.toml`, each from the
previous one's weights (a phase whose ``final/`` exists is not trained again); `benchmarks/reconstruction.py` and
`benchmarks/disentangle.py` on the SynthFaces test split; then the weights folder
``latentface/weights/synthfaces-tiny`` (config, safetensors, and a model card with the commands, seeds, steps,
machine and scores beside the baselines) and the score files in ``benchmarks/results/``. The card names the
machine this script runs on: run every phase there (reused phases from elsewhere would be misattributed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import torch

from latentface import LatentFace
from latentface.fileio import write_atomic
from latentface.hub import CONFIG_NAME, WEIGHTS_NAME
from latentface.training.config import TrainConfig, load_train_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks" / "configs"
TARGET = ROOT / "latentface" / "weights" / "synthfaces-tiny"
RESULTS = ROOT / "benchmarks" / "results"
EVALS = {"reconstruction": ("reconstruction", ["--identities", "100", "--samples-per-identity", "10"]),
         "disentangle": ("disentangle", ["--identities", "64", "--samples-per-identity", "16", "--clips", "32",
                                         "--frames", "16"]),
         "disentangle-held": ("disentangle", ["--identities", "64", "--samples-per-identity", "16", "--hold",
                                              "light,shift", "--clips", "0"])}
"""Scores of the card: name -> (benchmark script, its arguments)."""
MAP_ROWS = ("albedo_map", "normal_map", "true_albedo_map", "true_normal_map")
"""Rows of the card's disentanglement table from `disentangle.py`'s canonical-map feature sets."""


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


PHASES = ("stage1", "stage1_narrow", "stage1_tight", "stage1_decay", "stage1_texshape", "stage1_texshape_decay",
          "stage1_light", "stage1_light_decay", "stage1_confidence", "stage2")
"""Training phases in order, each started from the previous one's final weights (configs/synthfaces_tiny_*.toml)."""


def _shown(path: Path) -> Path:
    """`path` relative to the repository when inside it (the commands run there; the card shows them)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def train_command(phase: str, work: Path, init: Path | None, overrides: Sequence[str] = ()) -> tuple[Path, list[str]]:
    """The training run of one phase and the command that trains it (as the card shows it).

    Args:
        phase: one of `PHASES`.
        work: folder of the training runs.
        init: final weights of the previous phase, or None for the first.
        overrides: ``KEY=VALUE`` config overrides of this phase.

    Returns:
        The run folder and the command.
    """
    out = (work / f"synthfaces-tiny-{phase.replace('_', '-')}").resolve()
    config = f"benchmarks/configs/synthfaces_tiny_{phase}.toml"
    cmd = ["accelerate", "launch", "benchmarks/train.py", "--config", config, f"output_dir={_shown(out)}"]
    cmd += [f"init={_shown(init)}"] if init is not None else []
    return out, cmd + list(overrides)


def eval_commands() -> list[list[str]]:
    """The scoring commands of the card, one per entry of `EVALS`, as a user runs them on the bundled weights."""
    return [["python", f"benchmarks/{script}.py", "--weights", "synthfaces-tiny", *args]
            for script, args in EVALS.values()]


def train(phase: str, work: Path, init: Path | None, overrides: Sequence[str] = ()) -> tuple[Path, list[str]]:
    """Train one phase unless its final weights exist; returns them and the command (`train_command`)."""
    out, cmd = train_command(phase, work, init, overrides)
    if not (out / "final" / WEIGHTS_NAME).is_file():
        run([sys.executable, *cmd[2:]])
    elif overrides:
        raise SystemExit(f"phase {phase} is already trained in {out}: remove that folder to train it with "
                         f"{' '.join(overrides)}")
    return out / "final", cmd


def shipped(final: Path, dtype: str, folder: Path) -> Path:
    """`final` as it ships: floating tensors stored in `dtype` (``from_pretrained`` widens them to float32)."""
    LatentFace.from_pretrained(final).to(getattr(torch, dtype)).save_pretrained(folder)
    return folder


def evaluate(weights: Path, name: str, tag: str) -> dict[str, Any]:
    script, args = EVALS[name]
    output = RESULTS / f"{name}-synthfaces-tiny-{tag}.json"
    run([sys.executable, f"benchmarks/{script}.py", "--weights", str(_shown(weights)), *args, "--no-progress",
         "--output", str(output)])
    return json.loads(output.read_text())


def _ms(summary: dict[str, Any], scale: float = 1.0, digits: int = 2) -> str:
    return f"{summary['mean'] * scale:.{digits}f} +- {summary['std'] * scale:.{digits}f}"


PAPER = {"lr": 1e-4, "weight_decay": 5e-4, "batch_size": 64, "clips_per_step": 1, "clip_length": 16, "lam_perc": 1.0,
         "lam_flip": 0.5, "lam_depth_sm": 0.0, "depth_range": (0.9, 1.1), "light_range": (0.0, 1.0),
         "clip_sample": 1.0, "rdm_norm_groups": 32}
"""The released recipe values (optimisation, clip length, losses, depth and light ranges, RDM clamp and norm groups)
the card compares with."""


def _probe_selection(probe_chance: dict[str, Any]) -> str:
    """How a disentangle report's probe chose its L2 weight, in words."""
    if probe_chance.get("folds"):
        return f"{probe_chance['folds']}-fold cross-validation over the training identities"
    return "a stratified fifth of the training images"


def _machine_text(machine: dict[str, Any]) -> str:
    where = f"{machine['gpu']} GPU" if machine.get("gpu") else f"{machine['cpu_usable']}-core CPU"
    return f"{where} ({machine['cpu_model']}), torch {machine['torch']}"


def _phase_rows(phases: dict[str, TrainConfig]) -> list[str]:
    rows = ["| phase | stage | steps | batch | lr | lam_flip | lam_perc | lam_depth_sm | seed |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in phases.items():
        losses = (f"{c.loss.lam_flip:g} | {c.loss.lam_perc:g} | {c.loss.lam_depth_sm:g}" if c.stage == 1
                  else "- | - | -")  # Stage 2's loss has no weights
        lr = f"{c.optim.lr:g}" + ("" if c.optim.lr_schedule == "constant" else f" ({c.optim.lr_schedule})")
        rows.append(f"| {name} | {c.stage} | {c.optim.max_steps} | {c.optim.batch_size} | {lr} | {losses} | "
                    f"{c.seed} |")
    return rows


def _deviations(phases: dict[str, TrainConfig], model: dict[str, Any]) -> str:
    stage1 = [c for c in phases.values() if c.stage == 1]
    notes = [f"widths {model['ae_width']} (autoencoder) / {model['light_pose_width']} (light, pose), latent size "
             f"{model['latent_dim']}, RDM width {model['rdm_width']} (released: 64 / 32, 256, 128)"]
    if any(c.loss.lam_perc == 0 for c in stage1):
        notes.append("no perceptual loss in some phases (`lam_perc = 0`)")
    if any(c.loss.lam_perc != 0 and c.loss.perceptual_net != "vgg16" for c in stage1):
        notes.append("perceptual loss on MTCNN's O-Net up to prelu3 (`loss.perceptual_net = \"onet\"`, the weights "
                     "shipped with facenet-pytorch) instead of ImageNet VGG16 relu3_3, which cannot be downloaded "
                     "where these weights are built")
    flips = sorted({c.loss.lam_flip for c in stage1} - {PAPER["lam_flip"]})
    if flips:
        notes.append(f"flipped-branch weight {', '.join(f'{f:g}' for f in flips)} (`loss.lam_flip`; released 0.5)")
    restarts = [name for name, c in phases.items() if c.init_texture_encoder == "shape"]
    if restarts:
        notes.append(f"the texture encoder restarted as a copy of the shape encoder in {', '.join(restarts)} "
                     "(`init_texture_encoder = \"shape\"`)")
    if any(c.data.cache_images for c in stage1):
        notes.append("Stage-1 images rendered once and stored in 8 bits (`data.cache_images`)")
    if any(c.loss.lam_depth_sm != PAPER["lam_depth_sm"] for c in stage1):
        notes.append("Unsup3D's depth smoothness term in some phases (`lam_depth_sm`; 0 for its faces)")
    caps = sorted({c.loss.sigma_max for c in stage1 if c.loss.sigma_max is not None})
    if caps:
        notes.append(f"confidence maps capped at {', '.join(f'{cap:g}' for cap in caps)} in some phases "
                     "(`loss.sigma_max`; released unbounded)")
    lrs = sorted({c.optim.lr for c in phases.values()} - {PAPER["lr"]})
    if lrs:
        notes.append(f"learning rate {', '.join(f'{lr:g}' for lr in lrs)} (released 1e-4)")
    schedules = sorted({c.optim.lr_schedule for c in phases.values()} - {"constant"})
    if schedules:
        notes.append(f"{', '.join(schedules)} learning-rate decay in some phases (`optim.lr_schedule`; released "
                     "constant)")
    decays = sorted({c.optim.weight_decay for c in phases.values()} - {PAPER["weight_decay"]})
    if decays:
        notes.append(f"weight decay {', '.join(f'{wd:g}' for wd in decays)} in some phases (released 5e-4)")
    if any(c.optim.batch_size != PAPER["batch_size"] for c in stage1):
        notes.append(f"Stage-1 batch {', '.join(sorted({str(c.optim.batch_size) for c in stage1}))} (released 64)")
    stage2 = [c for c in phases.values() if c.stage == 2]
    if any(c.optim.batch_size != PAPER["clips_per_step"] for c in stage2):
        notes.append(f"Stage-2 batch {', '.join(sorted({str(c.optim.batch_size) for c in stage2}))} clips "
                     "(released 1)")
    if any(c.data.clip_length != PAPER["clip_length"] for c in stage2):
        notes.append(f"Stage-2 clips of {', '.join(sorted({str(c.data.clip_length) for c in stage2}))} frames "
                     "(`data.clip_length`; released 16)")
    if any(c.data.clip_light == "frame" for c in stage2):
        notes.append("a new light for every frame of the Stage-2 clips (`data.clip_light = \"frame\"`; released: "
                     "real videos, whose light holds within a clip)")
    gammas = sorted({c.loss.rdm_snr_gamma for c in stage2 if c.loss.rdm_snr_gamma is not None})
    if gammas:
        notes.append(f"RDM loss weight min(SNR(t), {', '.join(f'{g:g}' for g in gammas)}) (`loss.rdm_snr_gamma`, "
                     "Min-SNR; released SNR(t))")
    gaps = sorted({c.loss.rdm_target_gap for c in stage2 if c.loss.rdm_target_gap})
    if gaps:
        notes.append(f"each frame's Stage-2 target leaves out the frames nearer than {', '.join(map(str, gaps))} to it "
                     "(`loss.rdm_target_gap`; released: the mean of the whole clip)")
    if model.get("rdm_norm_groups", PAPER["rdm_norm_groups"]) != PAPER["rdm_norm_groups"]:
        notes.append(f"{model['rdm_norm_groups']} GroupNorm groups in the RDM (released 32)")
    if (model["min_depth"], model["max_depth"]) != PAPER["depth_range"]:
        notes.append(f"depth range ({model['min_depth']:g}, {model['max_depth']:g}) (released "
                     f"({PAPER['depth_range'][0]:g}, {PAPER['depth_range'][1]:g}))")
    if model.get("border_depth") is not None:
        notes.append(f"border depth {model['border_depth']:g} (`border_depth`; released 0.7 x max + 0.3 x min depth)")
    lights = [(name, model[f"min_{name}"], model[f"max_{name}"]) for name in ("ambient", "diffuse")]
    if any((low, high) != PAPER["light_range"] for _, low, high in lights):
        notes.append(", ".join(f"{name} range ({low:g}, {high:g})" for name, low, high in lights)
                     + f" (released ({PAPER['light_range'][0]:g}, {PAPER['light_range'][1]:g}) each)")
    if model["clip_sample"] != PAPER["clip_sample"]:
        clamp = "none" if model["clip_sample"] is None else f"[-{model['clip_sample']:g}, {model['clip_sample']:g}]"
        notes.append(f"clamp of the RDM's predicted x0 when sampling: {clamp} (released [-1, 1], which this model's "
                     "latents exceed)")
    return "; ".join(notes) + "."


def card(commands: list[list[str]], phases: dict[str, TrainConfig], model: dict[str, Any], recon: dict[str, Any],
         dis: dict[str, Any], machine: dict[str, Any], dtype: str = "float32",
         held: dict[str, Any] | None = None) -> str:
    """The model card of the bundled weights (`held`: the disentangle report with light and offset held per
    identity)."""
    r = recon["results"]
    lines = [
        "---", "library_name: latentface", "license: mit", "tags: [latentface, face, synthetic]", "---", "",
        "# synthfaces-tiny", "",
        "A small LatentFace model (both stages) trained by this library's pipeline on SynthFaces, its procedural",
        f"3D face world, on a {_machine_text(machine)}. It exists so that every example and test runs offline: it",
        "reconstructs SynthFaces-like images, not real faces, and its numbers are not the paper's. For real faces,",
        "convert the official checkpoints (`latentface convert`).", "",
        "## How it was made", "",
        "```bash", *(" ".join(c) for c in commands), "```", "",
        "`benchmarks/make_synthfaces_tiny.py` runs the phases in turn (each from the previous one's weights), scores",
        "the result and writes this folder. Phases (configs `benchmarks/configs/synthfaces_tiny_*.toml`, with the",
        "overrides in the commands above); SynthFaces world seed 0, train split:", "",
        *_phase_rows(phases), "",
        *(["Stage 2 trains on its clips' latents encoded once by the frozen Stage 1 (`data.cache_latents`): the same "
            "losses as encoding every step.", ""] if any(c.data.cache_latents for c in phases.values()) else []),
        f"Deviations from the paper's recipe: {_deviations(phases, model)}", "",
        *([f"The weights are stored in {dtype} to keep the file small; `from_pretrained` loads them as float32. "
           "Every score below is measured on the stored weights.", ""] if dtype != "float32" else []),
        "## Scores on the SynthFaces test split (identities never seen in training)", "",
        f"Depth in the input view, {recon['num_images']} images (`benchmarks/reconstruction.py`; Unsup3D's",
        "SIDE and MAD, GT foreground = face mask eroded by one pixel; mean +- std over images):", "",
        "| depth | SIDE (x 1e-2) | MAD (deg) | relief | normal slope |", "|---|---:|---:|---:|---:|",
        *(f"| {label} | {_ms(r[key]['side'], 100)} | {_ms(r[key]['mad'], 1, 1)} | {_ms(r[key]['relief'])} | "
          f"{_ms(r[key]['normal_slope'])} |"
          for key, label in (("model", "synthfaces-tiny"), ("mean_depth", "mean ground-truth depth"),
                             ("constant_depth", "constant depth"))), "",
        "Relief: least-squares slope of the predicted on the true depth over the same pixels (1 = the true relief).",
        "Normal slope: the same for the z of the normals (1 = the surface turns away from the camera as the true one "
        "does; below 1, flatter-facing, as a smoothed depth map is).",
        "",
        f"Over the mean-depth baseline: SIDE {r['model']['side_ratio']:.2f}x, MAD {r['model']['mad_ratio']:.2f}x; the "
        f"model's MAD is the lower on {100 * r['model']['mad_better']:.1f}% of the images.", "",
    ]
    if r.get("pose_light"):
        lines += ["Predicted pose and light against the true ones on the same images (least-squares slope of "
                  "predicted on true, and correlation; slope 1 = recovered at the true scale):", "",
                  "| factor | slope | r |", "|---|---:|---:|"]
        lines += [f"| {name} | {fit['slope']:.3f} | {fit['r']:.3f} |" for name, fit in r["pose_light"].items()]
        lines.append("")
    feats, chance = dis["results"]["features"], dis["results"]["chance"]
    lines += [
        f"Disentanglement, {dis['num_images']} images of {dis['settings']['data']['identities']} identities "
        "(`benchmarks/disentangle.py`): identity retrieval by cosine similarity across expressions, poses and light",
        "(top-1, mAP), and a linear expression probe trained on half of the identities, tested on the other half "
        f"(L2 weight chosen by {_probe_selection(chance['probe'])}):", "",
        "| features | retrieval top-1 | retrieval mAP | expression probe accuracy |", "|---|---:|---:|---:|",
    ]
    for name in ("raw_both", "identity_both", "expression_both", "raw_texture", "identity_texture", "raw_shape",
                 "identity_shape", "fer", *MAP_ROWS):
        if name in feats:
            f = feats[name]
            probe = f["probe"]["accuracy"] if f.get("probe") else float("nan")
            lines.append(f"| {name} | {f['retrieval']['top1']:.3f} | {f['retrieval']['mean_ap']:.3f} | {probe:.3f} |")
    lines += [f"| chance | {chance['retrieval']['top1']:.3f} | {chance['retrieval']['mean_ap']:.3f} | "
              f"{chance['probe']['majority_accuracy']:.3f} |", ""]
    if any(name in feats for name in MAP_ROWS):
        lines += ["The `*_map` rows: the model's canonical albedo and the normals of its canonical depth, and the true "
                  "ones, pooled to 16 px: which map carries the expression.", ""]
    split = dis["results"].get("split")
    if split:
        lines += ["The split into identity and expression (differences to the raw latents, in points of probe accuracy "
                  "and retrieval mAP):", "",
                  "| latent | raw probe | identity probe - raw | expression probe - raw | identity mAP - raw |",
                  "|---|---:|---:|---:|---:|"]
        for part, row in split.items():
            lines.append(f"| {part} | {row['raw_probe']:.3f} | {100 * row['identity_probe_minus_raw']:+.1f} | "
                         f"{100 * row['expression_probe_minus_raw']:+.1f} | "
                         f"{100 * row['identity_map_minus_raw']:+.1f} |")
        lines.append("")
    if held is not None:
        h = held["results"]["features"]
        lines += ["Identity retrieval with the light and 2D offset of each identity's first image given to all its "
                  "images (`--hold light,shift`): only expression and head angles vary, as within a video clip, "
                  "and Stage 2 learns to remove all of this variation:", "",
                  "| features | all factors vary: top-1 | mAP | light and offset held: top-1 | mAP |",
                  "|---|---:|---:|---:|---:|"]
        for name in ("raw_texture", "identity_texture", "raw_shape", "identity_shape"):
            if name in h and name in feats:
                a, b = feats[name]["retrieval"], h[name]["retrieval"]
                lines.append(f"| {name} | {a['top1']:.3f} | {a['mean_ap']:.3f} | {b['top1']:.3f} | "
                             f"{b['mean_ap']:.3f} |")
        lines.append("")
    clips = dis["results"].get("clips", {}).get("latents", {})
    if clips:
        lines += ["Invariance over SynthFaces clips: for each clip, the frames' latents against their own clip mean",
                  "(mean cosine similarity; mean distance over the mean latent norm), and the distance of the identity",
                  "estimates to the raw latents' clip mean, the RDM's training target (the released code's",
                  "\"Predict vs Origin distance\"):", "",
                  "| latent | cosine to clip mean | relative distance to clip mean | distance to raw clip mean |",
                  "|---|---:|---:|---:|"]
        for part in ("texture", "shape"):
            for kind in ("raw", "identity"):
                row = clips.get(f"{kind}_{part}")
                if row:
                    lines.append(f"| {kind} {part} | {row['cosine_to_clip_mean']:.5f} | "
                                 f"{row['relative_distance']:.4f} | {row['distance_to_target']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.new_parser(__doc__)
    p.add_argument("--work", type=Path, default=ROOT / "runs", help="folder of the training runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PHASE:KEY=VALUE",
                   help=f"override a config value of one phase ({', '.join(PHASES)}), e.g. stage1:optim.lr=1e-4")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="storage dtype of the shipped weights (float16 keeps them under 10 MB)")
    args = p.parse_args(argv)
    overrides: dict[str, list[str]] = {phase: [] for phase in PHASES}
    for item in args.overrides:
        phase, sep, setting = item.partition(":")
        if not sep or phase not in overrides or "=" not in setting:
            p.error(f"--set expects PHASE:KEY=VALUE with PHASE one of {', '.join(PHASES)}, got {item!r}")
        overrides[phase].append(setting)
    commands, phases, final = [], {}, None
    for phase in PHASES:
        final, cmd = train(phase, args.work, final, overrides[phase])
        commands.append(cmd)
        phases[phase] = load_train_config(final.parent / "config.toml")
    weights = shipped(final, args.dtype, args.work / "synthfaces-tiny-shipped")
    recon = evaluate(weights, "reconstruction", "final")  # Stage 2 leaves the Stage-1 networks unchanged
    dis = evaluate(weights, "disentangle", "final")
    held = evaluate(weights, "disentangle-held", "final")
    commands += eval_commands()
    devices = [torch.device("cuda")] if torch.cuda.is_available() else []  # the trainer's choice
    model_config = json.loads((final / CONFIG_NAME).read_text())
    text = card(commands, phases, model_config, recon, dis, harness.machine_info(devices), args.dtype, held)
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copyfile(weights / name, TARGET / name)
    write_atomic(TARGET / "README.md", text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    harness.run(main)

"""The training loop: Accelerate (one CPU, several processes, GPUs), checkpoints, exact resume, logs, export.

Run folder layout (``TrainConfig.output_dir``)::

    config.toml                 the resolved configuration
    metrics.csv                 one row per logged step (kept consistent with the checkpoint on resume); its
                                ``skipped_files`` column counts the unreadable files skipped since the last row
    tensorboard/                TensorBoard events, when tensorboard is installed
    images/step-XXXXXXXX.png    input / albedo / depth / shading / reconstruction grids (Stage 1)
    checkpoints/step-XXXXXXXX/  full state: model, optimizer, RNG states, and trainer_state.json (step, epoch,
                                batch position); written to a temporary folder, then renamed
    final/                      the trained weights in `LatentFace.from_pretrained` format

Resuming picks the newest complete checkpoint and continues with the same data order, flips and diffusion noise
(every random draw of a step comes from a generator seeded by (seed, process, epoch, batch)), so an interrupted
run ends where an uninterrupted one would.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from latentface.config import LatentFaceConfig
from latentface.errors import WeightsError
from latentface.fileio import write_atomic
from latentface.hashing import hashed_generator
from latentface.model import LatentFace
from latentface.outputs import Latents
from latentface.training.config import TrainConfig
from latentface.training.data import batch_tensor, build_dataset, skipped_files
from latentface.training.image_cache import CACHE_FILE as IMAGE_CACHE
from latentface.training.image_cache import CachedImages, image_cache_key, read_images
from latentface.training.image_cache import load_cache as load_images
from latentface.training.image_cache import save_cache as save_images
from latentface.training.latent_cache import CACHE_FILE as LATENT_CACHE
from latentface.training.latent_cache import ClipLatents, encode_clips, latent_cache_key, select_views
from latentface.training.latent_cache import load_cache as load_latents
from latentface.training.latent_cache import save_cache as save_latents
from latentface.training.losses import PerceptualLoss, perceptual_loss
from latentface.training.stage1 import Stage1Objective
from latentface.training.stage2 import Stage2Objective

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.json"
GRID_ITEMS = 8


@dataclass
class TrainerState:
    """Where training stands: optimizer steps done, current epoch and micro-batches consumed in it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _step_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded by a hash of the seed and keys (independent streams per process, epoch, batch)."""
    return hashed_generator(json.dumps([seed, *keys]), "sha256")


def _lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The learning-rate schedule stepped after every optimizer step; None for a constant rate."""
    if schedule == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps)))


def build_model(config: TrainConfig) -> LatentFace:
    """A new Stage-1 model, or for Stage 2 the init weights with fresh RDMs (Stage 1 frozen)."""
    if config.stage == 1:
        if config.init is None:
            settings = config.model_settings()
            return LatentFace(dataclasses.replace(LatentFaceConfig(rdm_width=None), **settings)).train()
        base = LatentFace.from_pretrained(config.init)
        if config.init_texture_encoder == "shape":
            base.albedo_net.encoder.load_state_dict(base.depth_net.encoder.state_dict())
        if not config.model:
            return base.train()
        # Settings that keep every tensor's shape (image formation: depth range, field of view, ...) may change.
        model = LatentFace(dataclasses.replace(base.config, **config.model_settings()))
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        changed = sorted(k for k, v in base.state_dict().items() if shapes.get(k) != v.shape)
        if changed or set(shapes) != set(base.state_dict()):
            raise ValueError(f"model settings {sorted(config.model)} change the networks of the init weights "
                             f"({(changed or sorted(set(shapes) ^ set(base.state_dict())))[:3]}); with init= only "
                             "settings that keep every tensor (image formation, e.g. min_depth, max_depth) may change")
        model.load_state_dict(base.state_dict())
        return model.train()
    base = LatentFace.from_pretrained(config.init)
    model_config = dataclasses.replace(base.config, **({"rdm_width": 128} | config.model_settings()))
    if model_config.rdm_width is None:
        raise ValueError("stage 2 trains the RDMs: model.rdm_width must not be None")
    model = LatentFace(model_config)
    stage1 = {k: v for k, v in base.state_dict().items() if not k.startswith(("albedo_rdm.", "depth_rdm."))}
    missing, unexpected = model.load_state_dict(stage1, strict=False)  # fresh RDMs, whatever the init holds
    if unexpected or any(not k.startswith(("albedo_rdm.", "depth_rdm.")) for k in missing):
        raise WeightsError(f"init weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, module in model.named_children():
        module.requires_grad_(name in ("albedo_rdm", "depth_rdm"))
    return model.train()


class Trainer:
    """Train one stage as configured; `train` returns the folder of the final weights.

    Args:
        config: the run (see `TrainConfig`).
        perceptual: Stage-1 perceptual loss to use instead of the configured one (tests).
        command: the command line recorded in the model card.
    """

    def __init__(self, config: TrainConfig, *, perceptual: PerceptualLoss | None = None,
                 command: str | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        config.validate()
        self.config = config
        self.command = command or " ".join(sys.argv)
        self.out = Path(config.output_dir)
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),  # several processes on a CPU-only machine then use gloo
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.optim.grad_accum,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
        )
        torch.manual_seed(config.seed)
        model = build_model(config)
        if config.stage == 1:
            if perceptual is None and config.loss.lam_perc != 0:
                perceptual = perceptual_loss(config.loss.perceptual_net, config.loss.perceptual_weights)
            if config.loss.lam_perc == 0:  # its confidence head gets no gradient (DDP requires every one to)
                model.confidence_net.head_perceptual.requires_grad_(False)
            objective: nn.Module = Stage1Objective(model, perceptual, config.loss.lam_flip, config.loss.lam_perc,
                                                   config.loss.lam_depth_sm, config.loss.sigma_max)
        else:
            objective = Stage2Objective(model, config.loss.rdm_snr_gamma, config.loss.rdm_target_gap)
        self.dataset: Dataset = build_dataset(config.data, config.stage, model.config.image_size)
        self.cache_skipped = 0
        if config.stage == 2 and config.data.cache_latents:
            self.dataset, self.cache_skipped = self._cached_latents(model, self.dataset)
        if config.stage == 1 and config.data.cache_images:
            self.dataset, self.cache_skipped = self._cached_images(self.dataset, model.config.image_size)
        if len(self.dataset) < config.optim.batch_size * self.accelerator.num_processes:
            raise ValueError(f"the dataset has {len(self.dataset)} items, fewer than one batch of "
                             f"{config.optim.batch_size} per process x {self.accelerator.num_processes} processes")
        loader = DataLoader(self.dataset, batch_size=config.optim.batch_size, shuffle=True, drop_last=True,
                            num_workers=config.data.num_workers,
                            generator=torch.Generator().manual_seed(config.seed))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=config.optim.betas,
                                     weight_decay=config.optim.weight_decay)
        self.objective, self.optimizer, self.loader = self.accelerator.prepare(objective, optimizer, loader)
        self.params = params
        self.state = TrainerState()
        self.steps_per_epoch = len(self.loader) // config.optim.grad_accum
        if self.steps_per_epoch < 1:
            raise ValueError("one epoch has fewer batches than optim.grad_accum: use more data or accumulate less")
        self.total_steps = self.steps_per_epoch * config.optim.epochs
        if config.optim.max_steps is not None:
            self.total_steps = min(self.total_steps, config.optim.max_steps)
        self.scheduler = _lr_scheduler(self.optimizer.optimizer, config.optim.lr_schedule, self.total_steps)
        if self.scheduler is not None:  # saved and restored with every checkpoint
            self.accelerator.register_for_checkpointing(self.scheduler)

    @property
    def model(self) -> LatentFace:
        """The model being trained (unwrapped from Accelerate's wrappers)."""
        return self.accelerator.unwrap_model(self.objective).model

    def _data_settings(self) -> dict[str, Any]:
        """The data settings that decide what a cache holds (not how it is read)."""
        ignored = ("num_workers", "cache_latents", "cache_images")
        return {k: v for k, v in dataclasses.asdict(self.config.data).items() if k not in ignored}

    def _cached_latents(self, model: LatentFace, clips: Dataset) -> tuple[ClipLatents, int]:
        """The clips' latents from ``latents.pt`` in the run folder, encoded first (main process) when that file is
        missing or was made from other Stage-1 weights or data settings."""
        acc, cfg = self.accelerator, self.config
        settings = {"data": self._data_settings(), "mirror": cfg.flip_prob > 0, "image_size": model.config.image_size}

        def encode() -> tuple[ClipLatents, int]:
            print(f"encoding {len(clips)} clips with the frozen Stage 1 into {self.out / LATENT_CACHE}",
                  file=sys.stderr, flush=True)
            model.to(acc.device)
            with acc.autocast():
                return encode_clips(model, clips, mirror=cfg.flip_prob > 0, batch_size=cfg.optim.batch_size,
                                    num_workers=cfg.data.num_workers, device=acc.device, progress=True)

        return self._main_process_cache(self.out / LATENT_CACHE, latent_cache_key(model, settings), load_latents,
                                        encode, save_latents)

    def _cached_images(self, images: Dataset, image_size: int) -> tuple[CachedImages, int]:
        """The training images from ``images.pt`` in the run folder, read first (main process) when that file is
        missing or was made with other data settings."""
        cfg = self.config

        def read() -> tuple[CachedImages, int]:
            print(f"reading {len(images)} images into {self.out / IMAGE_CACHE}", file=sys.stderr, flush=True)
            return read_images(images, batch_size=cfg.optim.batch_size, num_workers=cfg.data.num_workers,
                               progress=True)

        key = image_cache_key({"data": self._data_settings(), "image_size": image_size})
        return self._main_process_cache(self.out / IMAGE_CACHE, key, load_images, read, save_images)

    def _main_process_cache(self, path: Path, key: str, load: Any, build: Any, save: Any) -> Any:
        """What ``load(path, key)`` finds, else what the main process builds and saves there; every process then
        holds the same cache (the others read it after the main process is done)."""
        acc = self.accelerator
        cached = load(path, key) if acc.is_main_process else None
        if acc.is_main_process and cached is None:
            cached = build()
            self.out.mkdir(parents=True, exist_ok=True)
            save(path, key, *cached)
        acc.wait_for_everyone()
        if cached is None:  # the other processes read what the main process found or wrote
            cached = load(path, key)
        if cached is None:
            raise RuntimeError(f"the cache {path} was not written")
        return cached

    # ---------------------------------------------------------------- checkpoints

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        folder = self.out / "checkpoints"
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def save_checkpoint(self) -> Path:
        """Write the full state to ``checkpoints/step-N`` (temporary folder, then rename); prune old ones."""
        acc = self.accelerator
        final = self.out / "checkpoints" / f"{CHECKPOINT_PREFIX}{self.state.step:08d}"
        tmp = final.with_name(f".{final.name}.tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_atomic(tmp / STATE_FILE, json.dumps(dataclasses.asdict(self.state)).encode())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.checkpoints()[:-self.config.keep_checkpoints]:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return final

    def resume(self) -> bool:
        """Load the newest complete checkpoint, if any; returns whether one was loaded."""
        found = self.checkpoints()
        if not found:
            return False
        self.accelerator.load_state(str(found[-1]))
        self.state = TrainerState(**json.loads((found[-1] / STATE_FILE).read_text()))
        return True

    # ---------------------------------------------------------------- logging

    def _metrics_path(self) -> Path:
        return self.out / "metrics.csv"

    def _trim_metrics(self) -> None:
        """Drop log rows written after the checkpoint being resumed (they will be written again)."""
        path = self._metrics_path()
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if int(r[0]) <= self.state.step]
        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        write_atomic(path, buf.getvalue().encode())

    def _log(self, values: dict[str, float], tensorboard: Any) -> None:
        path = self._metrics_path()
        names = ["step", "epoch", *values]
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(names)
            writer.writerow([self.state.step, self.state.epoch, *(f"{v:.6g}" for v in values.values())])
        if tensorboard is not None:
            for name, value in values.items():
                tensorboard.add_scalar(name, value, self.state.step)

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _save_images(self, images: Tensor, output: Any) -> None:
        from latentface.visualize import depth_to_rgb, save_grid, shading_to_rgb

        n = min(GRID_ITEMS, len(images))
        r = output.rendering
        rows = [images[:n], r.albedo[:n], depth_to_rgb(r.canonical_depth[:n]), shading_to_rgb(r.shading[:n]),
                (r.image[:n] * r.mask[:n, None]).clamp(0, 1)]
        save_grid([t.detach().float().cpu() for t in rows], self.out / "images" /
                  f"{CHECKPOINT_PREFIX}{self.state.step:08d}.png", nrow=n)

    # ---------------------------------------------------------------- training

    def _augment(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """Random horizontal flip of each image (Stage 1) or each whole clip (Stage 2)."""
        flip = torch.rand(len(batch), generator=generator) < self.config.flip_prob
        view = flip.view(-1, *([1] * (batch.ndim - 1))).to(batch.device)
        return torch.where(view, batch.flip(-1), batch)

    def _inputs(self, batch: dict[str, Any], generator: torch.Generator) -> Tensor | Latents:
        """The step's randomly flipped images (Stage 1), clips or cached clip latents (Stage 2)."""
        if isinstance(self.dataset, ClipLatents):  # the same draw as `_augment`, so the same clips are flipped
            return select_views(batch, torch.rand(len(batch["albedo"]), generator=generator) < self.config.flip_prob)
        return self._augment(batch_tensor(batch), generator)

    def _forward(self, batch: Tensor | Latents, generator: torch.Generator) -> Any:
        if self.config.stage == 1:
            cfg = self.config.loss
            lam_flip = 1.0 if self.state.epoch < cfg.lam_flip_start_epoch else cfg.lam_flip
            return self.objective(batch, lam_flip=lam_flip)
        device = batch.texture.device if isinstance(batch, Latents) else batch.device
        noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        step = self.state.step + 1  # the optimizer step this batch belongs to
        logged = step % self.config.log_every == 0 or step == self.total_steps
        return self.objective(batch, generator=noise, reconstruction=logged)  # the diagnostic costs ~15 steps

    def train(self, resume: bool = False) -> Path:
        """Run to ``total_steps`` (resuming from the newest checkpoint when asked); returns ``final/``."""
        acc, cfg = self.accelerator, self.config
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / "config.toml", cfg.to_toml().encode())
        if resume and self.resume() and acc.is_main_process:
            self._trim_metrics()
        tensorboard = self._tensorboard() if acc.is_main_process else None
        progress = None
        if acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=self.total_steps, initial=self.state.step, desc=f"stage {cfg.stage}",
                            disable=not sys.stderr.isatty())
        window: dict[str, list[float]] = {}  # name -> [sum, count] (some terms are computed on logging steps only)
        seen, started = 0, time.perf_counter()
        # Files the latent cache's reader skipped: counted once, in the first log row, by the process that encoded.
        skipped = self.cache_skipped if self.state.step == 0 and acc.is_main_process else 0
        self.objective.train()
        while self.state.step < self.total_steps:
            self.loader.set_epoch(self.state.epoch)
            if hasattr(self.dataset, "set_epoch"):  # clip readers draw each epoch's frames from (seed, epoch)
                self.dataset.set_epoch(self.state.epoch)
            loader = acc.skip_first_batches(self.loader, self.state.batch_in_epoch)
            for batch in loader:
                self.state.batch_in_epoch += 1
                skipped += len(skipped_files(batch))
                generator = _step_generator(cfg.seed, acc.process_index, self.state.epoch, self.state.batch_in_epoch)
                images = self._inputs(batch, generator)
                with acc.accumulate(self.objective):
                    output = self._forward(images, generator)
                    acc.backward(output.loss)
                    if acc.sync_gradients and cfg.optim.grad_clip is not None:
                        acc.clip_grad_norm_(self.params, cfg.optim.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if isinstance(images, Latents):
                    frames = images.texture.shape[:2].numel()
                else:
                    frames = len(images) * (images.shape[1] if images.ndim == 5 else 1)
                seen += frames * acc.num_processes
                for name, value in self._terms(output).items():
                    total = window.setdefault(name, [0.0, 0])
                    total[0] += value
                    total[1] += 1
                if not acc.sync_gradients:
                    continue
                self.state.step += 1
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
                if self.scheduler is not None:
                    self.scheduler.step()
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{output.loss.item():.4f}")
                if self.state.step % cfg.log_every == 0 or self.state.step == self.total_steps:
                    means = acc.reduce(torch.tensor([s / n for s, n in window.values()], device=acc.device), "mean")
                    values = dict(zip(window, means.tolist(), strict=True))
                    values["lr"] = lr
                    values["images_per_s"] = seen / (time.perf_counter() - started)
                    values["skipped_files"] = acc.reduce(torch.tensor(float(skipped), device=acc.device), "sum").item()
                    if acc.is_main_process:
                        self._log(values, tensorboard)
                    window, seen, skipped, started = {}, 0, 0, time.perf_counter()
                if cfg.stage == 1 and cfg.image_every and self.state.step % cfg.image_every == 0 \
                        and acc.is_main_process:
                    self._save_images(images, output)
                if cfg.checkpoint_every and self.state.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.state.step >= self.total_steps:
                    break
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        if progress is not None:
            progress.close()
        if tensorboard is not None:
            tensorboard.close()
        if not self.checkpoints() or int(self.checkpoints()[-1].name[len(CHECKPOINT_PREFIX):]) != self.state.step:
            self.save_checkpoint()
        return self.export()

    @staticmethod
    def _terms(output: Any) -> dict[str, float]:
        return {f.name: getattr(output, f.name).item() for f in dataclasses.fields(output)
                if isinstance(getattr(output, f.name), Tensor) and getattr(output, f.name).ndim == 0}

    def export(self) -> Path:
        """Write the trained weights to ``final/`` (main process) with a model card describing the run."""
        acc = self.accelerator
        final = self.out / "final"
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.model.save_pretrained(final, model_card_text=self.model_card())
        acc.wait_for_everyone()
        return final

    def model_card(self) -> str:
        """Model card of the trained weights: command, configuration, steps and machine."""
        acc, cfg = self.accelerator, self.config
        device = torch.cuda.get_device_name() if acc.device.type == "cuda" else platform.processor() or "CPU"
        return "\n".join([
            "---", "library_name: latentface", "tags: [latentface, face]", "---", "",
            f"# LatentFace weights (stage {cfg.stage})", "",
            f"Trained with `{self.command}` for {self.state.step} optimizer steps "
            f"({self.state.epoch} full epochs) on {acc.num_processes} process(es), device {acc.device} ({device}), "
            f"mixed precision {cfg.mixed_precision}, seed {cfg.seed}.", "",
            "## Training configuration", "", "```toml", cfg.to_toml().rstrip(), "```", "",
        ])

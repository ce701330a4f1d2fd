"""Training: configuration, the Accelerate loop, checkpoints, exact resume (also after SIGKILL), two processes."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentface import LatentFace
from latentface.training.config import TrainConfig, load_train_config
from latentface.training.data import build_dataset
from latentface.training.trainer import Trainer, build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train.py"
TINY = [
    'model={"ae_width": 16, "light_pose_width": 8, "latent_dim": 32, "confidence_latent_dim": 16}',
    "data.identities=8", "data.samples_per_identity=2", "optim.batch_size=4", "loss.lam_perc=0", "log_every=1",
    "checkpoint_every=2", "image_every=3",
]


def _config(tmp_path: Path, name: str, *extra: str) -> TrainConfig:
    return load_train_config(None, [*TINY, f"output_dir={tmp_path / name}", *extra])


def _stage2_config(tmp_path: Path, stage1: Path, name: str, *extra: str) -> TrainConfig:
    return load_train_config(None, [f"output_dir={tmp_path / name}", "stage=2", f"init={stage1}",
                              'model={"rdm_width": 32, "rdm_norm_groups": 8}', "data.identities=4",
                              "data.samples_per_identity=1", "data.clip_length=3", "optim.batch_size=2",
                              "optim.max_steps=4", "log_every=1", *extra])


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader(f)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def test_config_defaults_overrides_and_round_trip(tmp_path: Path) -> None:
    config = load_train_config(None, ["optim.lr=2e-4", "optim.betas=[0.5, 0.9]", "optim.max_steps=none",
                                'model={"ae_width": 32}', "data.kind=image_folder", "data.root=/data"])
    assert config.optim.lr == 2e-4 and config.optim.betas == (0.5, 0.9) and config.optim.max_steps is None
    assert config.model == {"ae_width": 32} and config.optim.weight_decay == 5e-4 and config.loss.lam_flip == 0.5
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert load_train_config(path) == config
    assert load_train_config(path, ["seed=3"]).seed == 3
    config = load_train_config(None, ["loss.rdm_snr_gamma=5"])
    path.write_text(config.to_toml())
    assert config.loss.rdm_snr_gamma == 5.0 and load_train_config(path) == config
    assert load_train_config(None).loss.rdm_snr_gamma is None  # the released SNR weight
    for value in ('model={"clip_sample": null}', 'model={"clip_sample": "none"}'):  # TOML has no null
        config = load_train_config(None, [value])
        assert config.model_settings() == {"clip_sample": None}
        path.write_text(config.to_toml())
        assert load_train_config(path).model_settings() == {"clip_sample": None}


@pytest.mark.parametrize(("overrides", "match"), [
    (["optim.learning_rate=1"], "unknown setting"),
    (["optim.batch_size=2.5"], "integer"),
    (["optim.batch_size=0"], "positive"),
    (["stage=2"], "init"),
    (["data.kind=celeba"], "data.root"),
    (["data.kind=mnist"], "data.kind"),
    (["mixed_precision=fp8"], "mixed_precision"),
    (["loss.rdm_snr_gamma=0"], "rdm_snr_gamma"),
    (["loss.rdm_target_gap=-1"], "rdm_target_gap"),
    (["loss.sigma_max=0"], "sigma_max"),
    (["stage=2", "init=x", "data.clip_length=16", "loss.rdm_target_gap=9"], "empty target: at most 8"),
    (["loss.perceptual_net=alexnet"], "perceptual_net"),
    (["optim.lr_schedule=linear"], "lr_schedule"),
    (["stage=2", "init=x", "data.cache_images=true"], "stage 1 only"),
    (["init=x", "init_texture_encoder=depth"], "init_texture_encoder"),
    (["init_texture_encoder=shape"], "with init="),
    (["stage=2", "init=x", "init_texture_encoder=shape"], "stage 1 with init="),
    (["stage=2", "init=x", "data.clip_light=image"], "data.clip_light must be one of"),
    (["data.clip_light=frame"], "stage 2 on data.kind='synthfaces'"),
    (["lr"], "section.key=value"),
])
def test_config_errors(overrides: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_train_config(None, overrides)


@pytest.mark.parametrize(("clip_light", "lights"), [("clip", 1), ("frame", 3)])
def test_stage2_synthfaces_clips_take_the_clip_light_setting(clip_light: str, lights: int) -> None:
    config = load_train_config(None, ["stage=2", "init=x", "data.identities=2", "data.samples_per_identity=1",
                                      "data.clip_length=3", f"data.clip_light={clip_light}"])
    clips = build_dataset(config.data, 2, 64)
    assert torch.unique(clips.batch(range(1)).light_code, dim=0).shape[0] == lights


def test_stage1_run_writes_logs_images_checkpoints_and_loadable_weights(tmp_path: Path) -> None:
    config = _config(tmp_path, "run", "optim.max_steps=6")
    trainer = Trainer(config)
    assert trainer.objective.sigma_max is None  # unbounded confidence maps, as released
    assert Trainer(_config(tmp_path, "cap", "loss.sigma_max=0.1")).objective.sigma_max == 0.1
    final = trainer.train()
    run = tmp_path / "run"
    assert [int(r["step"]) for r in _rows(run)] == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-00000004", "step-00000006"]
    assert sorted(p.name for p in (run / "images").iterdir()) == ["step-00000003.png", "step-00000006.png"]
    assert load_train_config(run / "config.toml") == config
    model = LatentFace.from_pretrained(final)
    assert model.config.ae_width == 16 and not model.config.has_rdm
    assert "optimizer steps" in model.model_card and "[optim]" in model.model_card


@pytest.mark.parametrize("source", ["init", "shape"])
def test_init_texture_encoder(tmp_path: Path, source: str) -> None:
    init = LatentFace.from_pretrained(Trainer(_config(tmp_path, "init", "optim.max_steps=1")).train())
    model = build_model(_config(tmp_path, "next", "init=" + str(tmp_path / "init" / "final"),
                                f"init_texture_encoder={source}"))
    own, expected = model.state_dict(), init.state_dict()
    if source == "shape":  # the texture encoder is the init's shape encoder; nothing else changes
        expected |= {k.replace("depth_net.encoder.", "albedo_net.encoder."): v for k, v in expected.items()
                     if k.startswith("depth_net.encoder.")}
    assert own.keys() == expected.keys() and all(torch.equal(own[k], expected[k]) for k in own)
    assert any(not torch.equal(init.state_dict()[k], own[k]) for k in own) == (source == "shape")


def test_resume_continues_exactly(tmp_path: Path) -> None:
    Trainer(_config(tmp_path, "full", "optim.max_steps=6")).train()
    Trainer(_config(tmp_path, "cut", "optim.max_steps=3")).train()
    Trainer(_config(tmp_path, "cut", "optim.max_steps=6")).train(resume=True)
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")
    full, cut = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_cosine_schedule_decays_the_rate_and_resumes_exactly(tmp_path: Path) -> None:
    cosine = ("optim.max_steps=6", "optim.lr_schedule=cosine", "optim.lr=1e-3")
    Trainer(_config(tmp_path, "full", *cosine)).train()
    rates = [float(r["lr"]) for r in _rows(tmp_path / "full")]
    assert rates == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * s / 6)) for s in range(6)], rel=1e-5)
    constant = Trainer(_config(tmp_path, "constant", "optim.max_steps=2", "optim.lr=1e-3"))
    assert constant.scheduler is None
    constant.train()
    assert [float(r["lr"]) for r in _rows(tmp_path / "constant")] == [1e-3, 1e-3]
    cut = tmp_path / "cut"  # the full run as it stood after its step-4 checkpoint
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000004", cut / "checkpoints" / "step-00000004")
    Trainer(_config(tmp_path, "cut", *cosine)).train(resume=True)
    assert _rows(cut) == _rows(tmp_path / "full")[4:]
    full, resumed = _weights(tmp_path / "full"), _weights(cut)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_resume_after_sigkill_mid_training(tmp_path: Path) -> None:
    steps = 40
    args = [sys.executable, str(SCRIPT), *TINY, f"optim.max_steps={steps}", "image_every=0"]
    subprocess.run([*args, f"output_dir={tmp_path / 'full'}"], check=True, capture_output=True, timeout=300)
    run = tmp_path / "killed"
    proc = subprocess.Popen([*args, f"output_dir={run}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step-00000004").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its 4th step checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists()
    done = subprocess.run([*args, f"output_dir={run}", "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _rows(run) == _rows(tmp_path / "full")
    assert [int(r["step"]) for r in _rows(run)] == list(range(1, steps + 1))
    full, resumed = _weights(tmp_path / "full"), _weights(run)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_cpu(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), *TINY, "optim.batch_size=2", "optim.max_steps=4", f"output_dir={run}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("weights written") == 1
    assert (run / "checkpoints" / "step-00000004" / "random_states_1.pkl").is_file()
    model = LatentFace.from_pretrained(run / "final")
    assert "on 2 process(es)" in model.model_card
    assert [int(r["step"]) for r in _rows(run)] == [1, 2, 3, 4]


def test_stage2_trains_the_rdms_on_clips(tmp_path: Path) -> None:
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    config = _stage2_config(tmp_path, stage1, "s2", "optim.grad_clip=1.0", "optim.max_steps=3")
    trainer = Trainer(config)
    assert trainer.objective.target_gap == 0  # the released clip-mean target
    assert Trainer(_stage2_config(tmp_path, stage1, "gap", "loss.rdm_target_gap=1")).objective.target_gap == 1
    model = LatentFace.from_pretrained(trainer.train())
    before = LatentFace.from_pretrained(stage1)
    assert model.config.rdm_width == 32
    assert torch.equal(model.albedo_net.decoder[0].weight, before.albedo_net.decoder[0].weight)  # Stage 1 frozen
    assert [r["step"] for r in _rows(tmp_path / "s2")] == ["1", "2", "3"]
    assert set(_rows(tmp_path / "s2")[0]) == {"step", "epoch", "loss", "albedo", "depth", "reconstruction", "lr",
                                              "skipped_files"}


def test_image_folder_with_a_broken_file_is_trained_on_and_the_skip_logged(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "faces"
    root.mkdir()
    for i in range(9):
        Image.new("RGB", (80, 70), (20 * i, 100, 200 - 20 * i)).save(root / f"face{i}.png")
    (root / "broken.png").write_bytes(b"not an image")
    config = _config(tmp_path, "folder", "data.kind=image_folder", f"data.root={root}", "optim.batch_size=2",
                     "optim.max_steps=5", "image_every=0")
    Trainer(config).train()
    rows = _rows(tmp_path / "folder")
    assert len(rows) == 5 and sum(float(r["skipped_files"]) for r in rows) == 1  # one epoch: 10 files, one broken


def test_wrong_data_for_the_stage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(_config(tmp_path, "small", "data.identities=1", "data.samples_per_identity=2"))
    with pytest.raises(ValueError, match="stage 1 reads images"):
        Trainer(_config(tmp_path, "clips", "data.kind=clip_folder", f"data.root={tmp_path}"))
    with pytest.raises(FileNotFoundError):
        Trainer(_config(tmp_path, "missing", "data.kind=image_folder", f"data.root={tmp_path / 'nowhere'}"))


@pytest.mark.parametrize("path", sorted((SCRIPT.parent / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path: Path) -> None:
    config = load_train_config(path, ["data.root=/data", "init=weights"])
    assert config.stage == (2 if "stage2" in path.stem else 1)
    if not path.stem.startswith("synthfaces_tiny"):  # the paper's recipes; the demo weights' deviate (model card)
        assert config.optim.weight_decay == 5e-4 and config.optim.betas == (0.9, 0.999)
        assert config.loss.rdm_snr_gamma is None and config.optim.lr == 1e-4


def test_gradient_accumulation_and_bf16(tmp_path: Path) -> None:
    # A separate process: Accelerate fixes the mixed precision once per process.
    run = tmp_path / "accum"
    args = [sys.executable, str(SCRIPT), *TINY, "optim.grad_accum=2", "optim.batch_size=2", "optim.max_steps=3",
            "mixed_precision=bf16", "image_every=0", f"output_dir={run}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _rows(run)
    assert [r["step"] for r in rows] == ["1", "2", "3"] and all(r["epoch"] == "0" for r in rows)
    state = (run / "checkpoints" / "step-00000003" / "trainer_state.json").read_text()
    assert '"batch_in_epoch": 6' in state  # two micro-batches per optimizer step


def test_stage1_init_takes_image_formation_settings_but_not_other_networks(tmp_path: Path) -> None:
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    narrow = load_train_config(None, [*TINY[1:], f"output_dir={tmp_path / 'narrow'}", f"init={stage1}",
                                'model={"min_depth": 0.95, "max_depth": 1.05}'])
    trainer = Trainer(narrow)
    assert (trainer.model.config.min_depth, trainer.model.config.max_depth) == (0.95, 1.05)
    base = LatentFace.from_pretrained(stage1)
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in base.state_dict().items())
    wider = load_train_config(None, [*TINY[1:], f"output_dir={tmp_path / 'wider'}", f"init={stage1}",
                               'model={"latent_dim": 64}'])
    with pytest.raises(ValueError, match="change the networks"):
        Trainer(wider)


def test_stage2_reconstruction_term_only_on_logging_steps(tmp_path: Path, monkeypatch) -> None:
    from latentface.training.stage2 import Stage2Objective

    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    calls = []
    original = Stage2Objective._first_light_reconstruction
    monkeypatch.setattr(Stage2Objective, "_first_light_reconstruction",
                        lambda self, clips, codes: calls.append(1) or original(self, clips, codes))
    config = _stage2_config(tmp_path, stage1, "s2", "optim.max_steps=5", "log_every=2")
    Trainer(config).train()
    rows = _rows(tmp_path / "s2")
    assert [r["step"] for r in rows] == ["2", "4", "5"] and len(calls) == 3  # steps 2, 4 and the last
    assert all(float(r["reconstruction"]) == float(r["reconstruction"]) for r in rows)  # logged, not NaN


def test_stage2_on_cached_latents_equals_encoding_every_step(tmp_path: Path, monkeypatch) -> None:
    import latentface.training.trainer as trainer_module

    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    plain = Trainer(_stage2_config(tmp_path, stage1, "plain")).train()
    cached = Trainer(_stage2_config(tmp_path, stage1, "cached", "data.cache_latents=true")).train()
    assert (tmp_path / "cached" / "latents.pt").is_file()
    plain_rows, cached_rows = _rows(tmp_path / "plain"), _rows(tmp_path / "cached")
    assert [r["step"] for r in cached_rows] == ["1", "2", "3", "4"] and "reconstruction" not in cached_rows[0]
    for a, b in zip(plain_rows, cached_rows, strict=True):  # the same clips, flips, t and noise at every step
        for name in ("loss", "albedo", "depth"):
            assert float(a[name]) == pytest.approx(float(b[name]), rel=1e-4)
    for name, value in _weights(plain.parent).items():
        torch.testing.assert_close(_weights(cached.parent)[name], value, rtol=1e-4, atol=1e-5)

    calls = []
    original = trainer_module.encode_clips
    monkeypatch.setattr(trainer_module, "encode_clips", lambda *a, **k: calls.append(1) or original(*a, **k))
    Trainer(_stage2_config(tmp_path, stage1, "cached", "data.cache_latents=true", "optim.max_steps=5")).train(
        resume=True)
    assert calls == []  # same weights and data: the cache is reused
    Trainer(_stage2_config(tmp_path, stage1, "cached", "data.cache_latents=true", "data.seed=1")).train()
    assert calls == [1]  # another SynthFaces world: encoded again


def test_stage1_on_cached_images_trains_on_the_8_bit_images(tmp_path: Path, monkeypatch) -> None:
    import latentface.training.trainer as trainer_module
    from latentface.data.synthfaces import SynthConfig, SynthFacesImages

    cached = Trainer(_config(tmp_path, "cached", "optim.max_steps=3", "data.cache_images=true"))
    rendered = SynthFacesImages(8, 2, split="train", seed=0, config=SynthConfig(size=64)).batch(range(16)).image
    images = torch.stack([cached.dataset[i]["image"] for i in range(16)])
    assert torch.equal(images, (rendered * 255).round() / 255)  # the same images, in order, rounded to 8 bits
    cached.train()
    assert (tmp_path / "cached" / "images.pt").is_file()
    Trainer(_config(tmp_path, "plain", "optim.max_steps=3")).train()
    plain_rows, cached_rows = _rows(tmp_path / "plain"), _rows(tmp_path / "cached")
    for a, b in zip(plain_rows, cached_rows, strict=True):  # the same batches and flips; 8-bit inputs
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=2e-2)

    calls = []
    original = trainer_module.read_images
    monkeypatch.setattr(trainer_module, "read_images", lambda *a, **k: calls.append(1) or original(*a, **k))
    Trainer(_config(tmp_path, "cached", "optim.max_steps=4", "data.cache_images=true")).train(resume=True)
    assert calls == []  # same data settings: the cache is reused
    Trainer(_config(tmp_path, "cached", "optim.max_steps=4", "data.cache_images=true", "data.seed=1"))
    assert calls == [1]  # another SynthFaces world: read again


def test_onet_perceptual_loss_trains(tmp_path: Path) -> None:
    pytest.importorskip("facenet_pytorch")
    trainer = Trainer(_config(tmp_path, "onet", "optim.max_steps=2", "loss.lam_perc=1", "loss.perceptual_net=onet"))
    assert trainer.model.confidence_net.head_perceptual[0].weight.requires_grad
    trainer.train()
    rows = _rows(tmp_path / "onet")
    assert all(float(r["perceptual"]) != 0 for r in rows)


def test_cached_latents_are_refused_for_stage1(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stage 2 only"):
        _config(tmp_path, "s1", "data.cache_latents=true")


def test_stage2_from_weights_with_other_rdms_starts_fresh_rdms(tmp_path: Path) -> None:
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    first = Trainer(_stage2_config(tmp_path, stage1, "a", "optim.max_steps=1")).train()
    config = _stage2_config(tmp_path, first, "b", "optim.max_steps=1", 'model={"rdm_width": 16, "rdm_norm_groups": 8}')
    trainer = Trainer(config)
    assert trainer.model.config.rdm_width == 16
    torch.testing.assert_close(trainer.model.depth_net.decoder[0].weight,
                               LatentFace.from_pretrained(first).depth_net.decoder[0].weight)


def test_select_views_picks_the_mirror_where_flipped() -> None:
    from latentface.training.latent_cache import ClipLatents, select_views

    albedo = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 4)
    cache = ClipLatents(albedo, -albedo)
    batch = {"albedo": albedo, "depth": -albedo}
    picked = select_views(batch, torch.tensor([True, False]))
    assert torch.equal(picked.texture, torch.stack([albedo[0, 1], albedo[1, 0]]))
    assert torch.equal(picked.shape, -picked.texture) and cache.views == 2 and len(cache) == 2
    with pytest.raises(ValueError, match="no mirrored latents"):
        select_views({"albedo": albedo[:, :1], "depth": albedo[:, :1]}, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="N, V, T, D"):
        ClipLatents(albedo[0], albedo[0])


def test_two_processes_share_one_latent_cache(tmp_path: Path) -> None:
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    run = tmp_path / "ddp2"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    settings = [f"output_dir={run}", "stage=2", f"init={stage1}", 'model={"rdm_width": 32, "rdm_norm_groups": 8}',
                "data.identities=4", "data.samples_per_identity=1", "data.clip_length=3", "optim.batch_size=1",
                "optim.max_steps=3", "log_every=1", "data.cache_latents=true"]
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), *settings]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("encoding 4 clips") == 1  # the main process encodes, the other one reads the file
    assert [int(r["step"]) for r in _rows(run)] == [1, 2, 3]
    assert LatentFace.from_pretrained(run / "final").config.rdm_width == 32


def _clip_folder(root: Path, broken: str | None = None) -> Path:
    """Four clips of three 64 px frames under `root`; the frame `broken` (``"clip/frame.png"``) is not an image."""
    from PIL import Image

    for c in range(4):
        (root / f"clip{c}").mkdir(parents=True)
        for f in range(3):
            Image.new("RGB", (64, 64), (60 * c, 40 * f, 100)).save(root / f"clip{c}" / f"{f}.png")
    if broken is not None:
        (root / broken).write_bytes(b"not an image")
    return root


def test_a_failed_cache_encoding_ends_every_process(tmp_path: Path) -> None:
    """Only the main process encodes the cache; when that fails, the run ends at once with the reader's error
    (the launcher stops the process waiting at the barrier) and leaves no cache file."""
    root = _clip_folder(tmp_path / "clips", broken="clip2/1.png")
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    run = tmp_path / "ddp"
    settings = [f"output_dir={run}", "stage=2", f"init={stage1}", 'model={"rdm_width": 32, "rdm_norm_groups": 8}',
                "data.kind=clip_folder", f"data.root={root}", "data.on_error=raise", "data.clip_length=3",
                "optim.batch_size=1", "optim.max_steps=3", "data.cache_latents=true"]
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), *settings]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert "cannot read" in done.stderr and "clip2/1.png" in done.stderr
    assert not (run / "latents.pt").exists()


def test_cached_latents_count_the_skipped_frames_once(tmp_path: Path) -> None:
    root = _clip_folder(tmp_path / "clips", broken="clip2/1.png")
    stage1 = Trainer(_config(tmp_path, "s1", "optim.max_steps=1")).train()
    config = _stage2_config(tmp_path, stage1, "cached", "data.kind=clip_folder", f"data.root={root}",
                            "data.cache_latents=true", "optim.max_steps=3")
    Trainer(config).train()
    rows = _rows(tmp_path / "cached")
    assert [float(r["skipped_files"]) for r in rows] == [1, 0, 0]  # logged with the first row, not every epoch

"""Shared fixtures: small, seeded models that run fast on a CPU."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch

from latentface import LatentFace, LatentFaceConfig
from latentface.convert import load_manifest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``cuda`` where no CUDA device is available (select them with ``-m cuda``)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a test module (restored afterwards): the machine is shared, tiny batches run faster,
    and in-process runs then round like the single-threaded processes some tests launch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides: object) -> LatentFaceConfig:
    """A small configuration with every part of the architecture (widths shrunk)."""
    values: dict[str, object] = dict(
        ae_width=16, light_pose_width=8, latent_dim=32, confidence_latent_dim=16, rdm_width=32, rdm_norm_groups=8
    )
    values.update(overrides)
    return LatentFaceConfig(**values)  # type: ignore[arg-type]


def seeded_model(config: LatentFaceConfig, seed: int = 0) -> LatentFace:
    """A model with deterministic random weights (1-d parameters such as norms perturbed too), in eval mode."""
    torch.manual_seed(seed)
    model = LatentFace(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def tiny_model() -> LatentFace:
    return seeded_model(tiny_config())


@pytest.fixture
def images() -> torch.Tensor:
    """Four random images (B, 3, 64, 64) in [0, 1]."""
    return torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


# --- Synthetic official checkpoints (full size, random weights), shared by test_convert.py and test_cli.py ---
# Shapes come from the key manifests in latentface/manifests (the official checkpoints' layout); nothing is downloaded.

OFFICIAL_STAGE1_NETS = ("netA", "netD", "netL", "netV", "netC")
# Unsup3D's encoder-decoder Sequential splits into LatentFace's network1 (encoder) / network2 (decoder) here.
OFFICIAL_DECODER_START = 13


def synthetic_weights(shapes: Mapping[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random tensors of the given shapes: 1-d weights (norms) near 1, biases near 0, other weights
    scaled by 1/sqrt(fan-in) so that activations stay of order one through the full-size networks."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if len(shape) == 1:
            mean, std = (1.0 if key.endswith("weight") else 0.0), 0.1
        else:
            mean, std = 0.0, math.sqrt(2.0 / math.prod(shape[1:]))
        out[key] = torch.empty(shape).normal_(mean, std, generator=gen)
    return out


def official_stage1(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Stage-1 state dicts netA, netD, netL, netV, netC in the Unsup3D layout (one ``network.*`` Sequential)."""
    manifest = load_manifest("unsup3d")
    return {net: synthetic_weights(manifest[net], seed * 100 + i) for i, net in enumerate(OFFICIAL_STAGE1_NETS)}


def split_stage1(stage1: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """The same tensors in LatentFace's split layout: netA/netD ``network.{i}`` -> ``network1.{i}`` (i < 13) or
    ``network2.{i - 13}``; the other nets unchanged (the official checkpoints' layout)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for net, state in stage1.items():
        if net not in ("netA", "netD"):
            out[net] = dict(state)
            continue
        out[net] = {}
        for key, value in state.items():
            head, index, param = key.split(".", 2)
            assert head == "network", key
            i = int(index)
            name = f"network1.{i}" if i < OFFICIAL_DECODER_START else f"network2.{i - OFFICIAL_DECODER_START}"
            out[net][f"{name}.{param}"] = value
    return out


def official_rdm(width: int, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """netEA / netED as released: diffusers UNet2DModel state dicts (0.14 attention names), all tensors random
    (off-centre taps of the 3x3 kernels and the attention's query/key included)."""
    manifest = load_manifest(f"latentface_w{width}")
    return {net: synthetic_weights(manifest[net], seed * 100 + i) for i, net in enumerate(("netEA", "netED"))}


def unsup3d_checkpoint(stage1: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, object]:
    """A ``checkpoint030.pth``-like dict: the five nets plus optimizer states and training metadata."""
    optimizers = {
        f"optimizer{net[3:]}": {
            "state": {0: {"step": torch.tensor(30.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 5e-4,
                              "amsgrad": False, "params": [0]}],
        }
        for net in OFFICIAL_STAGE1_NETS
    }
    return {**{net: dict(state) for net, state in stage1.items()}, **optimizers, "epoch": 30,
            "metrics": {"loss": [0.5, 0.4]}}


def latentface_checkpoint(
    stage1: Mapping[str, Mapping[str, torch.Tensor]], rdm: Mapping[str, Mapping[str, torch.Tensor]]
) -> dict[str, object]:
    """A ``diffusion_64.pth``-like dict: netEA, netED and the Stage-1 nets in the split layout, plus junk."""
    return {**{net: dict(state) for net, state in rdm.items()}, **split_stage1(stage1), "epoch": 30,
            "optimizerEA": {"state": {}, "param_groups": [{"lr": 1e-4, "params": []}]}}


@pytest.fixture(scope="session")
def official_stage1_weights() -> dict[str, dict[str, torch.Tensor]]:
    """Seeded full-size Stage-1 weights (Unsup3D layout); treat as read-only."""
    return official_stage1(seed=0)


@pytest.fixture(scope="session")
def unsup3d_checkpoint_path(official_stage1_weights, tmp_path_factory) -> Path:
    """``checkpoint030.pth`` written once per session with torch.save."""
    path = tmp_path_factory.mktemp("official") / "checkpoint030.pth"
    torch.save(unsup3d_checkpoint(official_stage1_weights), path)
    return path

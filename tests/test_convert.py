"""Converter: synthetic official checkpoints (full size, random weights) -> weights folders.

The converted models are checked against the ORIGINAL networks: Stage 1 against official-layout networks written
here from Unsup3D's `networks.py` architecture (loaded with the official keys), the RDM against a diffusers
UNet2DModel loaded with the official netEA / netED state dicts (all 3x3 taps and the attention's query/key random).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import (
    OFFICIAL_DECODER_START,
    OFFICIAL_STAGE1_NETS,
    latentface_checkpoint,
    official_rdm,
    split_stage1,
    synthetic_weights,
    unsup3d_checkpoint,
)
from torch import Tensor, nn

from latentface import CheckpointError, LatentFace, WeightsError
from latentface.convert import LICENCE_NOTE, convert_checkpoints, load_manifest

diffusers = pytest.importorskip("diffusers")

OUTPUT_FILES = {"config.json", "model.safetensors", "README.md"}


# ---------------------------------------------------------------------------------------------------------------
# Official Stage-1 networks, re-stated from Unsup3D's `networks.py` with the official Sequential indices.
# ---------------------------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False)


def _convt(cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, bias=False)


def _official_encoder_half(nf: int, zdim: int) -> list[nn.Module]:
    """Indices 0..12: conv/GN/LReLU x3, conv/LReLU, conv k4 s1 -> zdim, ReLU."""
    return [
        _conv(3, nf, 4, 2, 1), nn.GroupNorm(16, nf), nn.LeakyReLU(0.2),
        _conv(nf, nf * 2, 4, 2, 1), nn.GroupNorm(32, nf * 2), nn.LeakyReLU(0.2),
        _conv(nf * 2, nf * 4, 4, 2, 1), nn.GroupNorm(64, nf * 4), nn.LeakyReLU(0.2),
        _conv(nf * 4, nf * 8, 4, 2, 1), nn.LeakyReLU(0.2),
        _conv(nf * 8, zdim, 4, 1, 0), nn.ReLU(),
    ]


def official_encoder_decoder(cout: int, tanh: bool, nf: int = 64, zdim: int = 256) -> nn.Sequential:
    """Unsup3D EDDeconv (netA: cout 3 + tanh; netD: cout 1, no activation) as one Sequential ``network``."""
    layers = _official_encoder_half(nf, zdim) + [
        _convt(zdim, nf * 8, 4, 1, 0), nn.ReLU(), _conv(nf * 8, nf * 8, 3, 1, 1), nn.ReLU(),
        _convt(nf * 8, nf * 4, 4, 2, 1), nn.GroupNorm(64, nf * 4), nn.ReLU(),
        _conv(nf * 4, nf * 4, 3, 1, 1), nn.GroupNorm(64, nf * 4), nn.ReLU(),
        _convt(nf * 4, nf * 2, 4, 2, 1), nn.GroupNorm(32, nf * 2), nn.ReLU(),
        _conv(nf * 2, nf * 2, 3, 1, 1), nn.GroupNorm(32, nf * 2), nn.ReLU(),
        _convt(nf * 2, nf, 4, 2, 1), nn.GroupNorm(16, nf), nn.ReLU(),
        _conv(nf, nf, 3, 1, 1), nn.GroupNorm(16, nf), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        _conv(nf, nf, 3, 1, 1), nn.GroupNorm(16, nf), nn.ReLU(),
        _conv(nf, nf, 5, 1, 2), nn.GroupNorm(16, nf), nn.ReLU(),
        _conv(nf, cout, 5, 1, 2),
    ]
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class OfficialPlainEncoder(nn.Module):
    """Unsup3D Encoder (netL: cout 4, netV: cout 6), nf 32."""

    def __init__(self, cout: int, nf: int = 32) -> None:
        super().__init__()
        self.network = nn.Sequential(
            _conv(3, nf, 4, 2, 1), nn.ReLU(), _conv(nf, nf * 2, 4, 2, 1), nn.ReLU(),
            _conv(nf * 2, nf * 4, 4, 2, 1), nn.ReLU(), _conv(nf * 4, nf * 8, 4, 2, 1), nn.ReLU(),
            _conv(nf * 8, nf * 8, 4, 1, 0), nn.ReLU(), _conv(nf * 8, cout, 1), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x).reshape(x.shape[0], -1)


class OfficialEncoderDecoder(nn.Module):
    def __init__(self, cout: int, tanh: bool) -> None:
        super().__init__()
        self.network = official_encoder_decoder(cout, tanh)

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)


class OfficialConfNet(nn.Module):
    """Unsup3D ConfNet (netC): nf 64, zdim 128; two softplus heads."""

    def __init__(self, nf: int = 64, zdim: int = 128) -> None:
        super().__init__()
        self.network = nn.Sequential(
            *_official_encoder_half(nf, zdim),
            _convt(zdim, nf * 8, 4, 1, 0), nn.ReLU(),
            _convt(nf * 8, nf * 4, 4, 2, 1), nn.GroupNorm(64, nf * 4), nn.ReLU(),
            _convt(nf * 4, nf * 2, 4, 2, 1), nn.GroupNorm(32, nf * 2), nn.ReLU(),
        )
        self.out_net1 = nn.Sequential(
            _convt(nf * 2, nf, 4, 2, 1), nn.GroupNorm(16, nf), nn.ReLU(),
            _convt(nf, nf, 4, 2, 1), nn.GroupNorm(16, nf), nn.ReLU(),
            _conv(nf, 2, 5, 1, 2), nn.Softplus(),
        )
        self.out_net2 = nn.Sequential(_conv(nf * 2, 2, 3, 1, 1), nn.Softplus())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.network(x)
        return self.out_net1(h), self.out_net2(h)


def official_networks(stage1: Mapping[str, Mapping[str, Tensor]]) -> dict[str, nn.Module]:
    """The five official networks, strictly loaded with Unsup3D-layout state dicts."""
    nets: dict[str, nn.Module] = {
        "netA": OfficialEncoderDecoder(3, tanh=True),
        "netD": OfficialEncoderDecoder(1, tanh=False),
        "netL": OfficialPlainEncoder(4),
        "netV": OfficialPlainEncoder(6),
        "netC": OfficialConfNet(),
    }
    for name, net in nets.items():
        net.load_state_dict(stage1[name], strict=True)
        net.eval()
    return nets


def released_unet(width: int, state: Mapping[str, Tensor]) -> nn.Module:
    """diffusers UNet2DModel as released, holding an ORIGINAL netEA/netED state dict (0.14 attention names
    renamed to the current ones)."""
    rename = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
    prefix = "mid_block.attentions.0."
    modern = {}
    for key, value in state.items():
        if key.startswith(prefix):
            proj, param = key[len(prefix):].rsplit(".", 1)
            key = f"{prefix}{rename.get(proj, proj)}.{param}"
        modern[key] = value
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        unet = diffusers.UNet2DModel(
            sample_size=1, in_channels=512, out_channels=256, layers_per_block=2, block_out_channels=(width,),
            down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
        )
    unet.load_state_dict(modern, strict=True, assign=True)
    return unet.eval()


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: each synthetic checkpoint built, saved and converted once per module.
# ---------------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def official_nets(official_stage1_weights) -> dict[str, nn.Module]:
    return official_networks(official_stage1_weights)


@pytest.fixture(scope="module")
def rdm128() -> dict[str, dict[str, Tensor]]:
    return official_rdm(128, seed=1)


@pytest.fixture(scope="module")
def latentface128_path(official_stage1_weights, rdm128, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "diffusion_64.pth"
    torch.save(latentface_checkpoint(official_stage1_weights, rdm128), path)
    return path


@pytest.fixture(scope="module")
def converted_unsup3d(unsup3d_checkpoint_path, tmp_path_factory) -> Path:
    return convert_checkpoints(tmp_path_factory.mktemp("conv") / "unsup3d", unsup3d=unsup3d_checkpoint_path)


@pytest.fixture(scope="module")
def converted_w128(latentface128_path, tmp_path_factory) -> Path:
    return convert_checkpoints(tmp_path_factory.mktemp("conv") / "w128", rdm=latentface128_path)


@pytest.fixture(scope="module")
def faces() -> Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))


def _saved_state(folder: Path) -> dict[str, Tensor]:
    return safetensors.torch.load_file(str(folder / "model.safetensors"))


def _native_name(net: str, key: str) -> str:
    """Where an official Unsup3D-layout Stage-1 key must land (the released code's index mapping). The split
    layout's tensors are the same tensors renamed by `split_stage1`, so they must land at the same names."""
    head, index, param = key.split(".", 2)
    i = int(index)
    if net in ("netA", "netD"):
        prefix = {"netA": "albedo_net", "netD": "depth_net"}[net]
        assert head == "network"
        part, i = ("encoder", i) if i < OFFICIAL_DECODER_START else ("decoder", i - OFFICIAL_DECODER_START)
        return f"{prefix}.{part}.{i}.{param}"
    if net in ("netL", "netV"):
        return f"{'light_net' if net == 'netL' else 'view_net'}.{i}.{param}"
    part = {"network": "trunk", "out_net1": "head_pixel", "out_net2": "head_perceptual"}[head]
    return f"confidence_net.{part}.{i}.{param}"


def _assert_stage1_keys(saved: Mapping[str, Tensor], official: Mapping[str, Mapping[str, Tensor]]) -> None:
    stage1_saved = {k for k in saved if not k.startswith(("albedo_rdm.", "depth_rdm."))}
    expected = set()
    for net, state in official.items():
        for key, value in state.items():
            name = _native_name(net, key)
            expected.add(name)
            assert name in saved, f"{net}.{key} -> {name} missing"
            assert torch.equal(saved[name], value), f"{net}.{key} -> {name} differs"
    assert stage1_saved == expected


def _assert_codes_equivalent(model: LatentFace, official: Mapping[str, nn.Module], faces: Tensor) -> None:
    """`encode` of the converted model equals the official encoders (netA/netD: ``network.0..12``)."""
    x = faces * 2 - 1
    with torch.no_grad():
        codes = model.encode(faces)
        for name, got in (("netA", codes.texture), ("netD", codes.shape)):
            ref = official[name].network[:OFFICIAL_DECODER_START](x).flatten(1)
            assert ref.std() > 1e-3 and (ref > 0).any()  # a meaningful, non-degenerate latent
            torch.testing.assert_close(got, ref)
        torch.testing.assert_close(codes.light, official["netL"](x))
        torch.testing.assert_close(codes.pose, official["netV"](x))


def _assert_stage1_equivalent(model: LatentFace, official: Mapping[str, nn.Module], faces: Tensor) -> None:
    """Every Stage-1 output of the converted model equals that of the original networks."""
    _assert_codes_equivalent(model, official, faces)
    x = faces * 2 - 1
    with torch.no_grad():
        for native, name in ((model.albedo_net, "netA"), (model.depth_net, "netD")):
            _, decoded = native(x)
            ref = official[name](x)
            assert ref.std() > 1e-3
            torch.testing.assert_close(decoded, ref)
        for got, ref in zip(model.confidence_net(x), official["netC"](x), strict=True):
            assert ref.shape[-1] in (16, 64) and ref.std() > 1e-4
            torch.testing.assert_close(got, ref)


def _assert_rdm_equivalent(model: LatentFace, rdm: Mapping[str, Mapping[str, Tensor]], width: int) -> None:
    """Converted denoisers == diffusers UNet2DModel holding the original state dicts, at several timesteps."""
    gen = torch.Generator().manual_seed(3)
    x_t, cond = torch.randn(3, 256, generator=gen), torch.rand(3, 256, generator=gen)
    steps = (0, 1, 200, 600, 999)
    # One batched reference call per net: every sample with every timestep.
    batch = torch.cat([x_t, cond], dim=1).repeat(len(steps), 1)[:, :, None, None]
    t_batch = torch.tensor(steps).repeat_interleave(len(x_t))
    outputs = {}
    with torch.no_grad():
        for native, net in ((model.albedo_rdm, "netEA"), (model.depth_rdm, "netED")):
            assert native is not None and native.width == width
            unet = released_unet(width, rdm[net])
            ref = unet(batch, t_batch).sample[:, :, 0, 0].reshape(len(steps), len(x_t), 256)
            del unet
            assert ref.std() > 1e-2
            tol = dict(atol=1e-4 * max(1.0, ref.abs().max().item()), rtol=1e-4)
            for i, t in enumerate(steps):  # scalar timestep (the native net's fast path)
                torch.testing.assert_close(native(x_t, cond, t), ref[i], **tol)
            per_sample = torch.tensor(steps[1:4])  # one timestep per sample
            torch.testing.assert_close(native(x_t, cond, per_sample), ref[[1, 2, 3], [0, 1, 2]], **tol)
            outputs[net] = ref
    # netEA and netED are different networks: a swap would have been caught above.
    assert not torch.allclose(outputs["netEA"], outputs["netED"], atol=1e-2)


# ---------------------------------------------------------------------------------------------------------------
# Helpers of the synthetic checkpoints agree with the manifests (and so with the documented renaming).
# ---------------------------------------------------------------------------------------------------------------


def test_synthetic_checkpoints_follow_manifests(official_stage1_weights, rdm128) -> None:
    shapes = lambda nets: {n: {k: list(v.shape) for k, v in s.items()} for n, s in nets.items()}  # noqa: E731
    assert shapes(official_stage1_weights) == load_manifest("unsup3d")
    split = {**shapes(split_stage1(official_stage1_weights)), **shapes(rdm128)}
    assert split == load_manifest("latentface_w128")
    norm = official_stage1_weights["netA"]["network.1.weight"]
    assert 0.5 < norm.mean() < 1.5 and norm.std() > 0.01  # GroupNorm weights near 1, not constant


# ---------------------------------------------------------------------------------------------------------------
# Successful conversions.
# ---------------------------------------------------------------------------------------------------------------


def test_unsup3d_only(converted_unsup3d, official_stage1_weights, official_nets, faces) -> None:
    assert {p.name for p in converted_unsup3d.iterdir()} == OUTPUT_FILES
    _assert_stage1_keys(_saved_state(converted_unsup3d), official_stage1_weights)
    model = LatentFace.from_pretrained(converted_unsup3d)
    assert model.config.rdm_width is None and model.albedo_rdm is None
    _assert_stage1_equivalent(model, official_nets, faces)
    codes = model.encode(faces)
    with pytest.raises(WeightsError, match="no RDM"):
        model.disentangle(codes)
    with pytest.raises(WeightsError, match="no RDM"):
        model.features(faces)


def test_latentface_w128_rdm_only(converted_w128, official_stage1_weights, official_nets, rdm128, faces) -> None:
    """``--rdm`` alone: the released LatentFace checkpoint carries its own Stage 1."""
    _assert_stage1_keys(_saved_state(converted_w128), official_stage1_weights)
    model = LatentFace.from_pretrained(converted_w128)
    assert model.config.rdm_width == 128
    _assert_codes_equivalent(model, official_nets, faces)
    _assert_rdm_equivalent(model, rdm128, 128)
    feats = model.features(faces, generator=torch.Generator().manual_seed(0))
    assert feats.shape == (2, 1024) and torch.isfinite(feats).all()


def _rdm_w1024() -> dict[str, dict[str, Tensor]]:
    """Width-1024 netEA/netED (228M parameters each in the released 3x3-kernel layout). To keep the test fast,
    netED reuses netEA's resnet kernels, time projections and second time-embedding layer (torch.save stores
    them once); its input/output layers, first time layer, norms, biases and attention are its own."""
    manifest = load_manifest("latentface_w1024")
    rdm = {"netEA": synthetic_weights(manifest["netEA"], 200)}
    shared = {k for k, shape in manifest["netED"].items() if len(shape) == 4 and ".resnets." in k}
    shared |= {k for k in manifest["netED"] if k.endswith("time_emb_proj.weight")}
    shared.add("time_embedding.linear_2.weight")
    own = synthetic_weights({k: s for k, s in manifest["netED"].items() if k not in shared}, 201)
    rdm["netED"] = {k: own[k] if k in own else rdm["netEA"][k] for k in manifest["netED"]}
    return rdm


def test_latentface_w1024(official_stage1_weights, official_nets, faces, tmp_path_factory) -> None:
    """Width 1024 (pretrain branch / first release): large, built and converted once."""
    rdm = _rdm_w1024()
    path = tmp_path_factory.mktemp("official") / "diffusion_64.pth"
    torch.save(latentface_checkpoint(official_stage1_weights, rdm), path)
    out = convert_checkpoints(tmp_path_factory.mktemp("conv") / "w1024", rdm=path)
    path.unlink()
    saved = _saved_state(out)
    _assert_stage1_keys(saved, official_stage1_weights)
    # The converted RDM keeps the centre taps only, and drops the attention's query and key.
    manifest = load_manifest("latentface_w1024")["netEA"]
    expected = sum(math.prod(s[:2]) for k, s in manifest.items() if ".query." not in k and ".key." not in k)
    assert sum(v.numel() for k, v in saved.items() if k.startswith("albedo_rdm.")) == expected
    del saved
    model = LatentFace.from_pretrained(out)
    assert model.config.rdm_width == 1024
    _assert_codes_equivalent(model, official_nets, faces)
    _assert_rdm_equivalent(model, rdm, 1024)
    shutil.rmtree(out)  # 0.8 GB; pytest keeps the last runs' temporary folders


def test_both_with_identical_stage1(unsup3d_checkpoint_path, latentface128_path, converted_w128, tmp_path) -> None:
    out = convert_checkpoints(tmp_path / "both", unsup3d=unsup3d_checkpoint_path, rdm=latentface128_path)
    got, ref = _saved_state(out), _saved_state(converted_w128)
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    card = (out / "README.md").read_text()
    for source in (unsup3d_checkpoint_path, latentface128_path):
        assert source.name in card and _sha256(source) in card


@pytest.mark.parametrize(("net", "key"), [("netD", "network.20.weight"), ("netV", "network.10.weight")])
def test_both_with_different_stage1(
    official_stage1_weights, rdm128, unsup3d_checkpoint_path, tmp_path, net, key
) -> None:
    other = {n: dict(s) for n, s in official_stage1_weights.items()}
    other[net][key] = other[net][key] + 1e-3
    path = tmp_path / "diffusion_64.pth"
    torch.save(latentface_checkpoint(other, rdm128), path)
    message = _rejected(tmp_path / "out", unsup3d=unsup3d_checkpoint_path, rdm=path)
    assert f"Stage-1 {net} differs" in message and "checkpoint030.pth" in message


def test_rdm_without_stage1_is_rejected(rdm128, tmp_path) -> None:
    path = tmp_path / "rdm_only.pth"
    torch.save(dict(rdm128), path)
    assert "no Stage-1 networks" in _rejected(tmp_path / "out", rdm=path)


def test_model_card_names_sources(
    converted_unsup3d, converted_w128, unsup3d_checkpoint_path, latentface128_path
) -> None:
    for folder, source, what in ((converted_unsup3d, unsup3d_checkpoint_path, "Stage 1"),
                                 (converted_w128, latentface128_path, "RDM (width 128), with Stage 1")):
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert f"`{source.name}`" in card and _sha256(source) in card and what in card
        assert LICENCE_NOTE in card and "github.com/elliottwu/unsup3d" in card
        assert LatentFace.from_pretrained(folder).model_card == card


# ---------------------------------------------------------------------------------------------------------------
# Rejections: the error names the problem and nothing is written.
# ---------------------------------------------------------------------------------------------------------------


def _rejected(out: Path, **sources: object) -> str:
    """Run a conversion that must fail; check nothing appeared (no output, no temporary folder) and return the
    error message."""
    parent = out.parent
    before = {p.name: p.stat().st_mtime_ns for p in parent.iterdir()}
    inside = sorted(os.listdir(out)) if out.is_dir() else None
    with pytest.raises(CheckpointError) as info:
        convert_checkpoints(out, **sources)  # type: ignore[arg-type]
    assert {p.name: p.stat().st_mtime_ns for p in parent.iterdir()} == before
    assert (sorted(os.listdir(out)) if out.is_dir() else None) == inside
    return str(info.value)


def _save_modified(official_stage1_weights, path: Path, net: str, change) -> Path:
    stage1 = {n: dict(s) for n, s in official_stage1_weights.items()}
    change(stage1[net])
    torch.save(unsup3d_checkpoint(stage1), path)
    return path


@pytest.mark.parametrize(("net", "key"), [("netA", "network.42.weight"), ("netC", "out_net2.0.weight")])
def test_missing_key(official_stage1_weights, tmp_path, net, key) -> None:
    path = _save_modified(official_stage1_weights, tmp_path / "ck.pth", net, lambda s: s.pop(key))
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert net in message and key in message and "missing" in message


def test_unexpected_key(official_stage1_weights, tmp_path) -> None:
    def add(state: dict) -> None:
        state["network.12.weight"] = torch.ones(3)

    path = _save_modified(official_stage1_weights, tmp_path / "ck.pth", "netL", add)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert "netL" in message and "unexpected ['network.12.weight']" in message


@pytest.mark.parametrize(("net", "key", "shape"), [
    ("netA", "network.0.weight", [64, 3, 3, 3]),
    ("netD", "network.18.bias", [128]),
    ("netV", "network.10.weight", [4, 256, 1, 1]),
])
def test_wrong_shape(official_stage1_weights, tmp_path, net, key, shape) -> None:
    expected = list(official_stage1_weights[net][key].shape)

    def reshape(state: dict) -> None:
        state[key] = torch.zeros(shape)

    path = _save_modified(official_stage1_weights, tmp_path / "ck.pth", net, reshape)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert f"{net}.{key}" in message and str(shape) in message and str(expected) in message


def test_wrong_rdm_shape(official_stage1_weights, rdm128, tmp_path) -> None:
    rdm = {n: dict(s) for n, s in rdm128.items()}
    rdm["netED"]["up_blocks.0.resnets.2.conv_shortcut.weight"] = torch.zeros(128, 256, 3, 3)
    path = tmp_path / "diffusion_64.pth"
    torch.save(latentface_checkpoint(official_stage1_weights, rdm), path)
    message = _rejected(tmp_path / "out", rdm=path)
    assert "netED.up_blocks.0.resnets.2.conv_shortcut.weight" in message
    assert "[128, 256, 3, 3]" in message and "[128, 256, 1, 1]" in message


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_tensor(official_stage1_weights, tmp_path, bad) -> None:
    def poison(state: dict) -> None:
        state["out_net1.4.bias"] = state["out_net1.4.bias"].clone()
        state["out_net1.4.bias"][5] = bad

    path = _save_modified(official_stage1_weights, tmp_path / "ck.pth", "netC", poison)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert "netC.out_net1.4.bias" in message and "NaN or Inf" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_file(unsup3d_checkpoint_path, tmp_path, damage) -> None:
    data = unsup3d_checkpoint_path.read_bytes()
    content = {"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage]
    path = tmp_path / "checkpoint030.pth"
    path.write_bytes(content)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert "cannot read checkpoint" in message and "checkpoint030.pth" in message


def test_missing_file(tmp_path) -> None:
    assert "does not exist" in _rejected(tmp_path / "out", unsup3d=tmp_path / "nope.pth")


@pytest.mark.parametrize(("content", "kind"), [([torch.zeros(3)], "list"), (torch.zeros(3), "Tensor")])
def test_not_a_dict(tmp_path, content, kind) -> None:
    path = tmp_path / "ck.pth"
    torch.save(content, path)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert f"holds a {kind}" in message and "expected a dict" in message


def test_net_not_a_state_dict(official_stage1_weights, tmp_path) -> None:
    ckpt = unsup3d_checkpoint(official_stage1_weights)
    ckpt["netV"] = torch.zeros(3)
    path = tmp_path / "ck.pth"
    torch.save(ckpt, path)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert "netV is a Tensor" in message


def test_missing_stage1_net(official_stage1_weights, tmp_path) -> None:
    ckpt = unsup3d_checkpoint(official_stage1_weights)
    del ckpt["netC"]
    path = tmp_path / "ck.pth"
    torch.save(ckpt, path)
    assert "but lacks ['netC']" in _rejected(tmp_path / "out", unsup3d=path)


def test_partial_stage1_in_rdm_checkpoint_is_named(official_stage1_weights, tmp_path) -> None:
    ckpt = latentface_checkpoint(official_stage1_weights, official_rdm(128, seed=5))
    del ckpt["netL"]
    path = tmp_path / "diffusion_64.pth"
    torch.save(ckpt, path)
    assert "but lacks ['netL']" in _rejected(tmp_path / "out", rdm=path)


def _record_unpickling(marker: str) -> None:
    Path(marker).write_text("code ran while unpickling")


class _Payload:
    """Unpickling this object would call a function of this module (a global weights_only does not allow)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (_record_unpickling, (self.marker,))


def test_pickle_with_code_is_refused(official_stage1_weights, tmp_path) -> None:
    marker = tmp_path / "marker.txt"
    ckpt = unsup3d_checkpoint(official_stage1_weights)
    ckpt["args"] = _Payload(marker)
    path = tmp_path / "ck.pth"
    torch.save(ckpt, path)
    message = _rejected(tmp_path / "out", unsup3d=path)
    assert "weights_only=True" in message and "_record_unpickling" in message
    assert not marker.exists()


@pytest.mark.parametrize("width", [64, 256])
def test_unsupported_rdm_width(official_stage1_weights, tmp_path, width) -> None:
    manifest = load_manifest("latentface_w128")
    rdm = {net: {"conv_in.weight": torch.zeros(width, 512, 3, 3)} for net in ("netEA", "netED")}
    path = tmp_path / "diffusion_64.pth"
    torch.save({**rdm, **split_stage1(official_stage1_weights)}, path)
    assert set(manifest) == set(rdm) | set(OFFICIAL_STAGE1_NETS)
    message = _rejected(tmp_path / "out", rdm=path)
    assert f"unsupported RDM width {width}" in message and "(128, 1024)" in message


def test_no_checkpoint_given(tmp_path) -> None:
    assert "at least one checkpoint" in _rejected(tmp_path / "out")


def test_existing_output(unsup3d_checkpoint_path, converted_unsup3d, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "config.json").write_text("stale")
    message = _rejected(out, unsup3d=unsup3d_checkpoint_path)
    assert "not empty" in message and "overwrite" in message
    assert (out / "config.json").read_text() == "stale"

    convert_checkpoints(out, unsup3d=unsup3d_checkpoint_path, overwrite=True)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "config.json").read_bytes() == (converted_unsup3d / "config.json").read_bytes()
    LatentFace.from_pretrained(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_empty_existing_output_is_fine(unsup3d_checkpoint_path, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    convert_checkpoints(out, unsup3d=unsup3d_checkpoint_path)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_is_a_file(unsup3d_checkpoint_path, tmp_path, overwrite) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    message = _rejected(out, unsup3d=unsup3d_checkpoint_path, overwrite=overwrite)
    assert str(out) in message and "not a folder" in message
    assert out.read_text() == "a file"

"""Official checkpoints -> LatentFace weights folders.

Reads Unsup3D's ``checkpoint030.pth`` (encoder-decoders as one ``network.*`` Sequential) and LatentFace's
``diffusion_64.pth`` (encoder-decoders split into ``network1.*`` / ``network2.*``, plus the RDM denoisers
``netEA`` / ``netED`` as diffusers UNet2DModel state dicts of width 128 or 1024). Every key and shape is checked
against the manifests shipped in ``latentface/manifests`` before anything is written. Checkpoints are read with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from latentface.card import model_card
from latentface.config import LatentFaceConfig
from latentface.errors import CheckpointError

MANIFEST_DIR = Path(__file__).parent / "manifests"
STAGE1_NETS = ("netA", "netD", "netL", "netV", "netC")
RDM_NETS = ("netEA", "netED")
RDM_WIDTHS = (128, 1024)
LICENCE_NOTE = (
    "These weights are converted from the authors' released checkpoints (Unsup3D: github.com/elliottwu/unsup3d; "
    "LatentFace: github.com/ryanhe312/LatentFace). They remain under the original authors' terms: check the "
    "original licences before using or redistributing them."
)

_ENCODER_DECODER = {"netA": "albedo_net", "netD": "depth_net"}
_PLAIN = {"netL": "light_net", "netV": "view_net"}
_CONFIDENCE = {"network": "trunk", "out_net1": "head_pixel", "out_net2": "head_perceptual"}
_RDM = {"netEA": "albedo_rdm", "netED": "depth_rdm"}
# Unsup3D's single Sequential: the decoder starts at index 13 (the released code's split of it).
_DECODER_OFFSET = 13

# diffusers UNet2DModel (0.14 naming) -> native denoiser, per parameter owner; conv weights keep the centre tap.
_RESNET_PARTS = {"norm1": "norm1", "conv1": "fc1", "time_emb_proj": "time_proj", "norm2": "norm2", "conv2": "fc2",
                 "conv_shortcut": "shortcut"}
_RDM_FIXED = {
    "time_embedding.linear_1": "time_mlp.0",
    "time_embedding.linear_2": "time_mlp.2",
    "conv_in": "input_proj",
    "conv_norm_out": "out_norm",
    "conv_out": "output_proj",
    "mid_block.attentions.0.group_norm": "mid_attn.norm",
    "mid_block.attentions.0.value": "mid_attn.value",
    "mid_block.attentions.0.proj_attn": "mid_attn.out",
    "mid_block.resnets.0": "mid_in",
    "mid_block.resnets.1": "mid_out",
}
_RDM_UNUSED = ("mid_block.attentions.0.query.", "mid_block.attentions.0.key.")
_CONV_LAYERS = ("conv_in", "conv_out", "conv1", "conv2", "conv_shortcut")
_MODERN_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def load_manifest(name: str) -> dict[str, dict[str, list[int]]]:
    """Expected keys and shapes per network: ``unsup3d``, ``latentface_w128`` or ``latentface_w1024``."""
    return json.loads((MANIFEST_DIR / f"{name}_keys.json").read_text(encoding="utf-8"))


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Mapping[str, Tensor]]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not exist") from err
    except Exception as err:  # torch raises pickle, zip and runtime errors for corrupt or unsafe files
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r} with weights_only=True: {err}") from err
    if not isinstance(data, Mapping):
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} holds a {type(data).__name__}, expected a dict of networks"
        )
    return dict(data)


def _check_net(state: object, expected: Mapping[str, list[int]], net: str, source: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: {net} is a {type(state).__name__}, expected a state dict")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: {net} does not match the official layout: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: {net}.{key} is a {type(value).__name__}, expected a tensor")
        if list(value.shape) != list(shape):
            raise CheckpointError(f"{source}: {net}.{key} has shape {list(value.shape)}, expected {list(shape)}")
        if not torch.isfinite(value.sum()) and not torch.isfinite(value).all():  # fast path: a finite sum
            raise CheckpointError(f"{source}: {net}.{key} contains NaN or Inf")
    return dict(state)


def _stage1_layout(ckpt: Mapping[str, object], source: str) -> str:
    """``unsup3d`` (``network.*``) or ``latentface_w128`` (split ``network1/2.*``) for the encoder-decoders."""
    keys = ckpt["netA"] if isinstance(ckpt.get("netA"), Mapping) else {}
    if any(k.startswith("network1.") for k in keys):  # type: ignore[union-attr]
        return "latentface_w128"
    if any(k.startswith("network.") for k in keys):  # type: ignore[union-attr]
        return "unsup3d"
    raise CheckpointError(f"{source}: netA has neither 'network.*' (Unsup3D) nor 'network1.*' (LatentFace) keys")


def _map_stage1(net: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        head, index, param = key.split(".", 2)
        if net in _ENCODER_DECODER:
            prefix = _ENCODER_DECODER[net]
            if head == "network":
                i = int(index)
                part, i = ("encoder", i) if i < _DECODER_OFFSET else ("decoder", i - _DECODER_OFFSET)
            else:
                part, i = ("encoder" if head == "network1" else "decoder"), int(index)
            out[f"{prefix}.{part}.{i}.{param}"] = value
        elif net in _PLAIN:
            out[f"{_PLAIN[net]}.{index}.{param}"] = value
        else:
            out[f"confidence_net.{_CONFIDENCE[head]}.{index}.{param}"] = value
    return out


def _rdm_target(key: str) -> str | None:
    """Native name of a diffusers RDM parameter, or None for the parameters a 1x1 input never uses."""
    if key.startswith(_RDM_UNUSED):
        return None
    owner, param = key.rsplit(".", 1)
    if owner in _RDM_FIXED:
        return f"{_RDM_FIXED[owner]}.{param}"
    match = re.fullmatch(r"(down|up)_blocks\.0\.resnets\.(\d+)\.(\w+)", owner) or re.fullmatch(
        r"(mid)_block\.resnets\.(\d+)\.(\w+)", owner
    )
    if match is None:
        raise CheckpointError(f"no mapping for RDM parameter {key!r}")
    block, index, part = match.groups()
    base = ("mid_in", "mid_out")[int(index)] if block == "mid" else f"{block}.{index}"
    return f"{base}.{_RESNET_PARTS[part]}.{param}"


def rdm_from_diffusers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Native denoiser state dict from a released 1x1 UNet2DModel state dict (0.14 attention names).

    3x3 convolutions keep their centre tap, 1x1 convolutions become linear weights; the attention's query and key
    projections are dropped (on a single token they do not affect the output).
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        target = _rdm_target(key)
        if target is None:
            continue
        if value.ndim == 4:
            value = value[:, :, value.shape[2] // 2, value.shape[3] // 2]
        out[target] = value.clone()
    return out


def rdm_to_diffusers(state: Mapping[str, Tensor], modern_attention_names: bool = True) -> dict[str, Tensor]:
    """Inverse of `rdm_from_diffusers` for loading native weights into a diffusers UNet2DModel.

    Linear weights of convolution layers become 3x3 (or 1x1 for shortcuts) kernels with only the centre tap set;
    query and key projections are zero (their value does not matter on 1x1 inputs).

    Args:
        state: native denoiser state dict.
        modern_attention_names: use current diffusers names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) instead
            of the 0.14 names (``query``, ``key``, ``value``, ``proj_attn``).
    """
    inverse = {v: k for k, v in _RDM_FIXED.items()}
    parts = {v: k for k, v in _RESNET_PARTS.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        owner, param = key.rsplit(".", 1)
        if owner in inverse:
            name = inverse[owner]
        else:
            block, rest = owner.split(".", 1)
            if block in ("mid_in", "mid_out"):
                prefix, part = f"mid_block.resnets.{('mid_in', 'mid_out').index(block)}", rest
            else:
                index, part = rest.split(".", 1)
                prefix = f"{block}_blocks.0.resnets.{index}"
            name = f"{prefix}.{parts[part]}"
        if param == "weight" and name.rsplit(".", 1)[-1] in _CONV_LAYERS:
            k = 1 if name.endswith("conv_shortcut") else 3
            kernel = value.new_zeros(*value.shape, k, k)
            kernel[:, :, k // 2, k // 2] = value
            value = kernel
        out[f"{name}.{param}"] = value
    attn = "mid_block.attentions.0."
    for proj in ("query", "key"):
        out[f"{attn}{proj}.weight"] = torch.zeros_like(out[attn + "value.weight"])
        out[f"{attn}{proj}.bias"] = torch.zeros_like(out[attn + "value.bias"])
    if modern_attention_names:
        for old, new in _MODERN_ATTENTION.items():
            for param in ("weight", "bias"):
                out[f"{attn}{new}.{param}"] = out.pop(f"{attn}{old}.{param}")
    return out


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoints(
    output_dir: str | os.PathLike,
    *,
    unsup3d: str | os.PathLike | None = None,
    rdm: str | os.PathLike | None = None,
    overwrite: bool = False,
    title: str = "LatentFace (converted official weights)",
    notes: str | None = None,
) -> Path:
    """Convert official checkpoints into a LatentFace weights folder loadable by `LatentFace.from_pretrained`.

    Args:
        output_dir: folder to create.
        unsup3d: Unsup3D ``checkpoint030.pth`` (Stage 1), or any checkpoint with netA/netD/netL/netV/netC.
        rdm: LatentFace ``diffusion_64.pth`` (netEA/netED, width 128 or 1024). If it also holds Stage-1 networks
            they are used when `unsup3d` is omitted, and must equal those of `unsup3d` when both are given.
        overwrite: allow writing into an existing non-empty folder.
        title: heading of the model card.
        notes: markdown added to the card's provenance (e.g. where an archive was downloaded from).

    Returns:
        The output folder.

    Raises:
        CheckpointError: a checkpoint is unreadable or does not match the official layout (nothing is written).
    """
    from latentface.model import LatentFace

    if unsup3d is None and rdm is None:
        raise CheckpointError("give at least one checkpoint (unsup3d and/or rdm)")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"output {str(out)!r} exists and is not empty (pass overwrite=True / --overwrite)")

    sources: list[str] = []
    stage1: dict[str, dict[str, Tensor]] = {}
    rdm_states: dict[str, dict[str, Tensor]] = {}
    width: int | None = None
    for path, role in ((unsup3d, "Stage 1"), (rdm, "RDM")):
        if path is None:
            continue
        source = os.fspath(path)
        ckpt = _read_checkpoint(path)
        present = [n for n in STAGE1_NETS if n in ckpt]
        has_stage1 = len(present) == len(STAGE1_NETS)
        if present and not has_stage1:
            raise CheckpointError(f"{source}: has Stage-1 networks {present} but lacks "
                                  f"{[n for n in STAGE1_NETS if n not in ckpt]}")
        if role == "Stage 1" and not has_stage1:
            raise CheckpointError(f"{source}: lacks Stage-1 networks {[n for n in STAGE1_NETS if n not in ckpt]}")
        if role == "RDM":
            missing = [n for n in RDM_NETS if n not in ckpt]
            if missing:
                raise CheckpointError(f"{source}: lacks RDM networks {missing}")
            if not isinstance(ckpt["netEA"], Mapping):
                raise CheckpointError(f"{source}: netEA is a {type(ckpt['netEA']).__name__}, expected a state dict")
            conv_in = ckpt["netEA"].get("conv_in.weight")
            if not isinstance(conv_in, Tensor):
                raise CheckpointError(f"{source}: netEA lacks the tensor conv_in.weight")
            width = int(conv_in.shape[0])
            if width not in RDM_WIDTHS:
                raise CheckpointError(
                    f"{source}: unsupported RDM width {width} (netEA.conv_in.weight), expected one of {RDM_WIDTHS}"
                )
            manifest = load_manifest(f"latentface_w{width}")
            for net in RDM_NETS:
                rdm_states[net] = _check_net(ckpt[net], manifest[net], net, source)
        layout = None
        if has_stage1:
            layout = _stage1_layout(ckpt, source)
            manifest = load_manifest(layout)
            checked = {net: _check_net(ckpt[net], manifest[net], net, source) for net in STAGE1_NETS}
            mapped = {net: _map_stage1(net, state) for net, state in checked.items()}
            if not stage1:
                stage1 = mapped
            else:
                for net in STAGE1_NETS:
                    for key, value in mapped[net].items():
                        if not torch.equal(value, stage1[net][key]):
                            raise CheckpointError(
                                f"{source}: its Stage-1 {net} differs from the one in {os.fspath(unsup3d)!r} "
                                f"(first at {key}); omit unsup3d to use the RDM checkpoint's own Stage 1"
                            )
        what = role if role == "Stage 1" else f"RDM (width {width})" + (", with Stage 1" if has_stage1 else "")
        sources.append(
            f"- `{Path(source).name}`: {what}; layout `{layout or 'diffusers UNet2DModel'}`; sha256 `{_sha256(path)}`"
        )
    if not stage1:
        raise CheckpointError("no Stage-1 networks found: give the Unsup3D checkpoint")

    state: dict[str, Tensor] = {}
    for mapped in stage1.values():
        state.update(mapped)
    for net, native in _RDM.items():
        if net in rdm_states:
            state.update({f"{native}.{k}": v for k, v in rdm_from_diffusers(rdm_states[net]).items()})

    config = LatentFaceConfig(rdm_width=width)
    model = LatentFace(config)
    from latentface.hub import check_state_dict

    check_state_dict(model, state, "converted checkpoint")
    model.load_state_dict(state, strict=True)
    provenance = "\n".join(
        [
            f"Converted with latentface on {datetime.date.today().isoformat()} from:",
            "",
            *sources,
            "",
            *([notes.strip(), ""] if notes else []),
            LICENCE_NOTE,
        ]
    )
    card = model_card(config, title=title, provenance=provenance)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp, model_card_text=card)
        if out.is_dir() and any(out.iterdir()):
            for name in os.listdir(tmp):
                os.replace(tmp / name, out / name)
            tmp.rmdir()
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

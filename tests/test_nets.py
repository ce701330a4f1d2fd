"""Stage-1 networks: layer layout against the official manifests, shapes at every size, shared repeat."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import tiny_config

from latentface import LatentFace, LatentFaceConfig
from latentface.convert import MANIFEST_DIR, load_manifest
from latentface.nets.autoencoder import ConfidenceNet, EncoderDecoder, PlainEncoder, SharedRepeat


def _official_name(native: str) -> tuple[str, str]:
    """Official (net, key) in the LatentFace split layout for a native Stage-1 parameter name."""
    head, rest = native.split(".", 1)
    if head in ("albedo_net", "depth_net"):
        part, key = rest.split(".", 1)
        prefix = "network1." if part == "encoder" else "network2."
        return {"albedo_net": "netA", "depth_net": "netD"}[head], prefix + key
    if head in ("light_net", "view_net"):
        return {"light_net": "netL", "view_net": "netV"}[head], "network." + rest
    part, key = rest.split(".", 1)
    return "netC", {"trunk": "network.", "head_pixel": "out_net1.", "head_perceptual": "out_net2."}[part] + key


def test_default_stage1_matches_official_manifest() -> None:
    manifest = load_manifest("latentface_w128")
    model = LatentFace(LatentFaceConfig(rdm_width=None))
    got: dict[str, dict[str, list[int]]] = {}
    for name, tensor in model.state_dict().items():
        net, key = _official_name(name)
        got.setdefault(net, {})[key] = list(tensor.shape)
    assert got == {net: manifest[net] for net in ("netA", "netD", "netL", "netV", "netC")}


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shapes_at_each_size(size: int) -> None:
    nf, zdim = 16, 32
    x = torch.rand(2, 3, size, size) * 2 - 1
    ed = EncoderDecoder(3, 3, nf, zdim, repeat=LatentFaceConfig(image_size=size).repeat, activation=torch.nn.Tanh)
    z, out = ed(x)
    assert z.shape == (2, zdim) and (z >= 0).all()
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1
    plain = PlainEncoder(3, 6, 8, repeat=LatentFaceConfig(image_size=size).repeat)
    assert plain(x).shape == (2, 6)
    pixel, perceptual = ConfidenceNet(3, nf, 16, repeat=LatentFaceConfig(image_size=size).repeat)(x)
    assert pixel.shape == (2, 2, size, size) and perceptual.shape == (2, 2, size // 4, size // 4)
    assert (pixel > 0).all() and (perceptual > 0).all()


def test_repeated_block_shares_weights() -> None:
    ed = EncoderDecoder(3, 1, 16, 32, repeat=2)
    repeats = [m for m in ed.modules() if isinstance(m, SharedRepeat)]
    assert [r.times for r in repeats] == [2, 2]
    # One set of weights per repeated block, however often it is applied.
    once = EncoderDecoder(3, 1, 16, 32, repeat=1)
    assert sum(1 for k in ed.state_dict() if ".block." in k) == sum(1 for k in once.state_dict() if ".block." in k)


def test_latent_is_bottleneck_of_full_forward() -> None:
    ed = EncoderDecoder(3, 3, 16, 32).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z, out = ed(x)
    torch.testing.assert_close(ed.decode(z), out)


@pytest.mark.parametrize("field,value", [("image_size", 96), ("image_size", 32), ("ae_width", 24), ("rdm_width", 40),
                                         ("rdm_norm_groups", 32),  # one channel per group: a constant denoiser
                                         ("sampler", "ddpm"), ("min_depth", 2.0), ("sampling_steps", 0)])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        tiny_config(**{field: value})


def test_config_json_round_trip() -> None:
    cfg = tiny_config(image_size=128, sampler="ddim", clip_sample=None, preprocess={"resize_mode": "center_crop"})
    again = LatentFaceConfig.from_json(cfg.to_json())
    assert again == cfg and again.preprocess.resize_mode == "center_crop"
    with pytest.raises(ValueError, match="unknown LatentFaceConfig keys: bogus"):
        LatentFaceConfig.from_dict({**cfg.to_dict(), "bogus": 1})


# SHA-256 of each shipped manifest, taken from the official checkpoints' key lists when the manifests were written:
# a change to a manifest must be deliberate and update its digest here.
MANIFEST_SHA256 = {
    "unsup3d": "d71f4ed7e9238f557c21c21b10ce0f6867e512d02ea93aaa273bb2099999d2a8",
    "latentface_w128": "c7eb99f47b46731ab244ec3a57980a07a1860e3a8843a22ba302e14556e534c9",
    "latentface_w1024": "8deac58fc1e5bf33931124d65cb00ac31b21d4aa11a0dd4672c8b572f976ff82",
}


@pytest.mark.parametrize("name", sorted(MANIFEST_SHA256))
def test_shipped_manifests_are_the_pinned_reference(name: str) -> None:
    path = MANIFEST_DIR / f"{name}_keys.json"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MANIFEST_SHA256[name]
    assert load_manifest(name) == json.loads(path.read_text(encoding="utf-8"))


def test_every_shipped_manifest_is_pinned() -> None:
    shipped = sorted(p.name.removesuffix("_keys.json") for p in MANIFEST_DIR.glob("*_keys.json"))
    assert shipped == sorted(MANIFEST_SHA256)

"""The native RDM denoiser equals the released diffusers UNet2DModel on 1x1 inputs, at both widths."""

from __future__ import annotations

import warnings

import pytest
import torch

from latentface.convert import load_manifest, rdm_from_diffusers, rdm_to_diffusers
from latentface.nets.rdm import ConditionalDenoiser

diffusers = pytest.importorskip("diffusers")


def _perturbed(width: int) -> ConditionalDenoiser:
    torch.manual_seed(width)
    net = ConditionalDenoiser(256, width)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _released_unet(width: int) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.UNet2DModel(
            sample_size=1, in_channels=512, out_channels=256, layers_per_block=2, block_out_channels=(width,),
            down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
        ).eval()


@pytest.mark.parametrize("width", [128, 1024])
def test_native_equals_diffusers_unet(width: int) -> None:
    net = _perturbed(width)
    unet = _released_unet(width)
    unet.load_state_dict(rdm_to_diffusers(net.state_dict()), strict=True)
    # Queries and keys cannot matter on one token: give them random values in the reference.
    with torch.no_grad():
        unet.mid_block.attentions[0].to_q.weight.normal_()
        unet.mid_block.attentions[0].to_k.weight.normal_()
    gen = torch.Generator().manual_seed(0)
    x_t, cond = torch.randn(6, 256, generator=gen), torch.rand(6, 256, generator=gen)
    with torch.no_grad():
        for t in (0, 200, 800, 999):
            ours = net(x_t, cond, t)
            ref = unet(torch.cat([x_t, cond], 1)[:, :, None, None], t).sample[:, :, 0, 0]
            torch.testing.assert_close(ours, ref, atol=5e-5, rtol=1e-4)
        per_sample = torch.tensor([0, 100, 400, 999, 5, 800])
        ref = unet(torch.cat([x_t, cond], 1)[:, :, None, None], per_sample).sample[:, :, 0, 0]
        torch.testing.assert_close(net(x_t, cond, per_sample), ref, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("width", [128, 1024])
def test_released_layout_round_trip(width: int) -> None:
    net = _perturbed(width)
    released = rdm_to_diffusers(net.state_dict(), modern_attention_names=False)
    manifest = load_manifest(f"latentface_w{width}")["netEA"]
    assert {k: list(v.shape) for k, v in released.items()} == manifest
    back = rdm_from_diffusers(released)
    assert back.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(back[key], value), key


def test_scalar_timestep_equals_broadcast_vector() -> None:
    net = _perturbed(128)
    x_t, cond = torch.randn(5, 256), torch.rand(5, 256)
    with torch.no_grad():
        torch.testing.assert_close(net(x_t, cond, 400), net(x_t, cond, torch.full((5,), 400)))


def test_time_cache_follows_parameter_changes() -> None:
    net = _perturbed(128)
    x_t, cond = torch.randn(3, 256), torch.rand(3, 256)
    with torch.no_grad():
        first = net(x_t, cond, 600)
        assert 600 in net._time_cache and torch.equal(net(x_t, cond, 600), first)
        net.time_mlp[2].bias.add_(1.0)  # an in-place update, as an optimizer step or load_state_dict makes
        changed = net(x_t, cond, 600)
    with torch.enable_grad():
        assert torch.equal(net(x_t, cond, 600).detach(), changed)  # the uncached path agrees
    assert not torch.allclose(changed, first)
    net.mid_in.time_proj.weight.data = net.mid_in.time_proj.weight.data * 2  # a replaced tensor
    with torch.no_grad():
        assert torch.equal(net(x_t, cond, 600), net(x_t, cond, torch.tensor(600)))
        with torch.enable_grad():
            reference = net(x_t, cond, 600)
        torch.testing.assert_close(net(x_t, cond, 600), reference)


def test_compiles_once_across_cached_timesteps() -> None:
    """The time cache stays out of `torch.compile` graphs: one graph for every timestep, the eager results."""
    net = _perturbed(128)
    graphs = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(net, backend=backend)
    x_t, cond = torch.randn(3, 256), torch.rand(3, 256)
    with torch.inference_mode():
        for t in (999, 799, 599, 399, 199, 999, 599):
            assert torch.equal(compiled(x_t, cond, t), net(x_t, cond, t))
    torch._dynamo.reset()
    assert len(graphs) == 1

"""LatentFace's Stage-2 objective (`latentface.training.stage2`)."""

from __future__ import annotations

import pytest
import torch
from conftest import seeded_model, tiny_config

from latentface.errors import WeightsError
from latentface.training.stage2 import Stage2Objective, clip_targets


def test_targets_are_clip_means_and_stage1_gets_no_gradient() -> None:
    model = seeded_model(tiny_config())
    clips = torch.rand(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = Stage2Objective(model)(clips, generator=torch.Generator().manual_seed(1))
    for name in ("texture", "shape"):
        lat, tgt = getattr(out.latents, name).view(2, 4, -1), getattr(out.targets, name).view(2, 4, -1)
        torch.testing.assert_close(tgt, lat.mean(1, keepdim=True).expand_as(lat))
    out.loss.backward()
    assert all(p.grad is None for p in model.albedo_net.parameters())
    assert all(p.grad is not None for p in model.albedo_rdm.parameters() if p.requires_grad)
    torch.testing.assert_close(out.loss, out.albedo + out.depth)


@pytest.mark.parametrize(("frames", "gap"), [(5, 1), (8, 3), (8, 4), (64, 16)])
def test_clip_targets_leave_out_the_frames_nearer_than_the_gap(frames: int, gap: int) -> None:
    latents = torch.randn(2, frames, 6, generator=torch.Generator().manual_seed(frames + gap))
    targets = clip_targets(latents, gap)
    for i in range(frames):
        kept = [j for j in range(frames) if abs(i - j) >= gap]
        torch.testing.assert_close(targets[:, i], latents[:, kept].mean(1))
    torch.testing.assert_close(clip_targets(latents, 0), latents.mean(1, keepdim=True).expand_as(latents))


def test_clip_targets_refuse_a_gap_that_empties_a_target() -> None:
    clip_targets(torch.zeros(1, 5, 2), 2)  # the middle frame keeps frames 0 and 4
    with pytest.raises(ValueError, match="target gap"):
        clip_targets(torch.zeros(1, 5, 2), 3)


def test_the_target_gap_reaches_the_loss_targets() -> None:
    model = seeded_model(tiny_config())
    clips = torch.rand(1, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = Stage2Objective(model, target_gap=2)(clips, generator=torch.Generator().manual_seed(1))
    for name in ("texture", "shape"):
        lat = getattr(out.latents, name).view(1, 4, -1)
        torch.testing.assert_close(getattr(out.targets, name).view(1, 4, -1), clip_targets(lat, 2))
        torch.testing.assert_close(getattr(out.targets, name)[0], lat[0, 2:].mean(0))  # frame 0: frames 2 and 3


def test_the_same_generator_gives_the_same_loss() -> None:
    model = seeded_model(tiny_config())
    clips = torch.rand(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    objective = Stage2Objective(model)
    losses = [objective(clips, generator=torch.Generator().manual_seed(5)).loss.item() for _ in range(2)]
    assert losses[0] == losses[1]


def test_snr_gamma_caps_the_timestep_weight(monkeypatch) -> None:
    import latentface.training.stage2 as stage2

    seen = []
    real = stage2.x0_loss
    monkeypatch.setattr(stage2, "x0_loss", lambda *a: seen.append(a[-1]) or real(*a))
    model = seeded_model(tiny_config())
    clips = torch.rand(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    released = Stage2Objective(model)(clips, generator=torch.Generator().manual_seed(5)).loss
    capped = Stage2Objective(model, snr_gamma=5.0)(clips, generator=torch.Generator().manual_seed(5)).loss
    assert seen == [None, None, 5.0, 5.0]  # texture and shape RDMs, each run
    assert capped < released


def test_a_few_steps_decrease_the_loss() -> None:
    model = seeded_model(tiny_config()).train()
    objective = Stage2Objective(model)
    clips = torch.rand(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    params = [*model.albedo_rdm.parameters(), *model.depth_rdm.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = objective(clips, generator=g).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < sum(losses[:5])


def test_errors() -> None:
    with pytest.raises(WeightsError, match="RDM"):
        Stage2Objective(seeded_model(tiny_config(rdm_width=None)))
    with pytest.raises(ValueError, match="clips"):
        Stage2Objective(seeded_model(tiny_config()))(torch.rand(2, 3, 64, 64))


def test_reconstruction_term_uses_the_first_frames_light() -> None:
    from dataclasses import replace

    from latentface.training.stage1 import reconstruction_losses

    model = seeded_model(tiny_config())
    clips = torch.rand(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = Stage2Objective(model)(clips, generator=torch.Generator().manual_seed(1))
    frames = clips.flatten(0, 1)
    with torch.no_grad():
        codes = model.encode_batch(frames)
        first = codes.light.view(2, 3, -1)[:, :1].expand(2, 3, -1).reshape(6, -1)
        own = reconstruction_losses(model, frames, codes, None)
        shared = reconstruction_losses(model, frames, replace(codes, light=first), None)
    torch.testing.assert_close(out.reconstruction, shared.l1 + 0.5 * shared.l1_flip)
    assert not torch.isclose(out.reconstruction, own.l1 + 0.5 * own.l1_flip)
    assert not out.reconstruction.requires_grad

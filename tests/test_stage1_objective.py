"""Unsup3D's Stage-1 losses and objective (`latentface.training`)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import seeded_model, tiny_config
from torch import nn

from latentface.errors import WeightsError
from latentface.training.losses import (
    ONET_LAYERS,
    PerceptualLoss,
    onet_prelu3,
    perceptual_loss,
    photometric_loss,
    vgg16_relu3_3,
)
from latentface.training.stage1 import Stage1Objective, reconstruction_losses


def test_photometric_loss_values() -> None:
    recon = torch.zeros(1, 3, 2, 2)
    target = torch.full((1, 3, 2, 2), 0.25)
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    # [-1, 1] units: |diff| = 0.5 everywhere; the masked-out pixel must not count even if it differs more.
    target[..., 1, 1] = 1.0
    assert photometric_loss(recon, target, mask).item() == pytest.approx(0.5)
    sigma = torch.full((1, 1, 2, 2), 2.0)
    expected = 0.5 * math.sqrt(2) / 2.0 + math.log(2.0)
    assert photometric_loss(recon, target, mask, sigma).item() == pytest.approx(expected, rel=1e-6)


def test_perceptual_loss_is_zero_for_equal_images_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    loss = PerceptualLoss(vgg16_relu3_3("random"))
    x = torch.rand(2, 3, 32, 32)
    mask = torch.ones(2, 1, 32, 32)
    assert loss(x, x, mask).item() == 0
    assert loss(x, x.flip(-1), mask).item() > 0
    assert loss(x, x, mask, torch.ones(2, 1, 8, 8)).item() == pytest.approx(0.0, abs=1e-6)


def test_perceptual_loss_by_hand() -> None:
    # An identity "network": the loss is the confidence-weighted squared pixel error over the pooled mask.
    loss = PerceptualLoss(nn.Identity(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    recon, target = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    target[..., :2, :] = 0.5
    mask = torch.ones(1, 1, 4, 4)
    mask[..., 2:, 2:] = 0  # a quarter of the pixels masked
    expected = (0.25 * 8 * 3) / (12 * 3)  # 8 unmasked pixels of error 0.25 per channel, 12 unmasked pixels
    assert loss(recon, target, mask).item() == pytest.approx(expected)
    sigma = torch.full((1, 1, 2, 2), 2.0)  # another resolution than the features: resized to 4 x 4
    expected_sigma = expected / (2 * 4.0) + math.log(2.0)
    assert loss(recon, target, mask, sigma).item() == pytest.approx(expected_sigma, rel=1e-5)


def test_onet_perceptual_features() -> None:
    pytest.importorskip("facenet_pytorch")
    from facenet_pytorch.models.mtcnn import ONet

    features = onet_prelu3()
    assert not any(p.requires_grad for p in features.parameters()) and not features.training
    x = torch.rand(2, 3, 64, 64)
    reference = ONet(pretrained=True)
    expected = x
    for name in ONET_LAYERS:
        expected = getattr(reference, name)(expected)
    torch.testing.assert_close(features(x), expected)  # the shipped O-Net weights, up to prelu3
    assert features(x).shape == (2, 64, 12, 12)
    loss = perceptual_loss("onet")
    torch.testing.assert_close(loss.mean * 255, torch.full((1, 3, 1, 1), 127.5))  # MTCNN's (255 x - 127.5) / 128
    torch.testing.assert_close(loss.std * 255, torch.full((1, 3, 1, 1), 128.0))
    mask = torch.ones(2, 1, 64, 64)
    assert loss(x, x, mask, torch.ones(2, 1, 16, 16)).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, x.flip(-1), mask).item() > 0
    with pytest.raises(ValueError, match="perceptual net"):
        perceptual_loss("alexnet")


def test_vgg_weights_from_a_file(tmp_path) -> None:
    torch.manual_seed(0)
    reference = vgg16_relu3_3("random")
    state = {f"features.{k}": v for k, v in reference.state_dict().items()}
    state["classifier.weight"] = torch.zeros(2)  # a full VGG16 state dict has more than the features
    torch.save(state, tmp_path / "vgg16.pth")
    features = vgg16_relu3_3(tmp_path / "vgg16.pth")
    torch.testing.assert_close(features[14].weight, reference[14].weight)
    assert len(features) == 16 and not any(p.requires_grad for p in features.parameters())
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="VGG16"):
        vgg16_relu3_3(tmp_path / "bad.pth")


def test_a_few_steps_decrease_the_loss() -> None:
    model = seeded_model(tiny_config(rdm_width=None)).train()
    features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))  # VGG16 is too slow here
    objective = Stage1Objective(model, PerceptualLoss(features.requires_grad_(False)))
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        out = objective(x)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert out.rendering.image.shape == (8, 3, 64, 64)  # both branches
    assert losses[-1] < losses[0]
    lam = 0.5
    torch.testing.assert_close(out.loss, out.l1 + lam * out.l1_flip + out.perceptual + lam * out.perceptual_flip)
    assert out.depth_smoothness > 0


def test_depth_smoothness_term() -> None:
    model = seeded_model(tiny_config(rdm_width=None))
    objective = Stage1Objective(model, None, lam_perc=0.0, lam_depth_sm=2.0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = objective(x)
    torch.testing.assert_close(out.loss, out.l1 + 0.5 * out.l1_flip + 2.0 * out.depth_smoothness)
    depth = out.rendering.canonical_depth[:2, :, 2:-2]
    expected = ((depth[:, 1:] - depth[:, :-1]).abs().mean() + (depth[:, :, 1:] - depth[:, :, :-1]).abs().mean()) / 0.2
    torch.testing.assert_close(out.depth_smoothness, expected)
    with pytest.raises(ValueError, match="perceptual"):
        Stage1Objective(model, None)


@pytest.mark.parametrize("sigma_max", [None, 0.5, 1e3])
def test_sigma_max_caps_both_confidence_maps(sigma_max: float | None) -> None:
    model = seeded_model(tiny_config(rdm_width=None)).eval()
    features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4)).requires_grad_(False)
    perceptual = PerceptualLoss(features)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = model.encode_batch(x)
        got = reconstruction_losses(model, x, codes, perceptual, sigma_max)
        sigma_pixel, sigma_perceptual = model.confidence_net(x * 2 - 1)
    cap = math.inf if sigma_max is None else sigma_max
    assert sigma_pixel.min() < 0.5 < sigma_pixel.max()  # a cap of 0.5 changes some weights but not all
    sigma_pixel, sigma_perceptual = sigma_pixel.clamp(max=cap), sigma_perceptual.clamp(max=cap)
    mask = got.rendering.mask[:, None].float()
    recon = (got.rendering.image - 0.5) * mask + 0.5
    torch.testing.assert_close(got.l1, photometric_loss(recon[:2], x, mask[:2], sigma_pixel[:, :1]))
    torch.testing.assert_close(got.l1_flip, photometric_loss(recon[2:], x, mask[2:], sigma_pixel[:, 1:]))
    torch.testing.assert_close(got.perceptual, perceptual(recon[:2], x, mask[:2], sigma_perceptual[:, :1]))
    torch.testing.assert_close(got.perceptual_flip, perceptual(recon[2:], x, mask[2:], sigma_perceptual[:, 1:]))
    uncapped = reconstruction_losses(model, x, codes, perceptual)
    assert (got.l1 == uncapped.l1) == (sigma_max != 0.5)
    objective = Stage1Objective(model, perceptual, sigma_max=sigma_max)
    assert objective.sigma_max == sigma_max
    with torch.no_grad():
        torch.testing.assert_close(objective(x).l1, got.l1)

"""Unsup3D's Stage-1 losses: confidence-weighted photometric L1 and a perceptual loss.

Images are compared in the [-1, 1] units of the original code (so the L1 term equals Unsup3D's). The perceptual
network is Unsup3D's VGG16 up to relu3_3 (ImageNet-normalised input), or, as an option that needs no download,
MTCNN's O-Net up to its third convolution (the face-landmark network whose weights ship inside the
facenet-pytorch wheel; its own input normalisation).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentface.errors import WeightsError
from latentface.training.config import PERCEPTUAL_NETS

EPS = 1e-7
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELU3_3 = 16
"""Number of VGG16 ``features`` layers up to and including relu3_3."""
ONET_MEAN = (0.5, 0.5, 0.5)
ONET_STD = (128 / 255, 128 / 255, 128 / 255)
"""MTCNN's input normalisation, ``(255 x - 127.5) / 128`` for x in [0, 1]."""
ONET_LAYERS = ("conv1", "prelu1", "pool1", "conv2", "prelu2", "pool2", "conv3", "prelu3")
"""The O-Net modules the perceptual loss runs, in order: up to and including prelu3."""


def photometric_loss(recon: Tensor, target: Tensor, mask: Tensor, sigma: Tensor | None = None) -> Tensor:
    """Masked mean of ``|recon - target| * sqrt(2) / sigma + log(sigma)`` (Laplacian NLL), in [-1, 1] units.

    Args:
        recon, target: (B, 3, H, W) images in [0, 1] units.
        mask: (B, 1, H, W) float weights (1 = valid).
        sigma: optional (B, 1, H, W) confidence map; plain masked L1 when None.

    Returns:
        Scalar loss.
    """
    loss = (recon - target).abs() * 2  # [0, 1] -> [-1, 1] units
    if sigma is not None:
        loss = loss * math.sqrt(2) / (sigma + EPS) + (sigma + EPS).log()
    mask = mask.expand_as(loss)
    return (loss * mask).sum() / mask.sum()


def vgg16_relu3_3(weights: str | os.PathLike = "imagenet") -> nn.Sequential:
    """VGG16 ``features`` up to relu3_3, frozen, via timm.

    Args:
        weights: ``"imagenet"`` (timm's ``vgg16.tv_in1k`` from the Hugging Face Hub), a local file holding a
            timm or torchvision VGG16 state dict, or ``"random"`` (random initialisation; tests only).

    Raises:
        WeightsError: the ImageNet weights cannot be downloaded or the file does not hold VGG16 weights.
    """
    import timm

    if weights == "imagenet":
        try:
            net = timm.create_model("vgg16.tv_in1k", pretrained=True)
        except Exception as e:  # network, Hub or cache errors all mean the same to the user
            raise WeightsError(
                "cannot download the ImageNet VGG16 weights (timm 'vgg16.tv_in1k') for the perceptual loss; pass a "
                "local VGG16 state dict (--perceptual-weights FILE) instead"
            ) from e
        features = net.features[:RELU3_3]
    else:
        with torch.device("meta"):  # the classifier (most of VGG16's 138M parameters) is never materialised
            features = timm.create_model("vgg16", pretrained=False).features[:RELU3_3]
        if weights == "random":
            features.to_empty(device="cpu")
            for module in features:
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()
        else:
            features.load_state_dict(_vgg_features_state(Path(weights), features), assign=True)
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return features.requires_grad_(False).eval()


def _vgg_features_state(path: Path, features: nn.Module) -> dict[str, Tensor]:
    """The ``features.*`` tensors of a timm or torchvision VGG16 state dict, keyed as in `features`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read VGG16 weights from {path}: {e}") from e
    wanted = {f"features.{k}": k for k in features.state_dict()}
    missing = sorted(set(wanted) - set(state))
    shapes = [k for k in wanted if k in state and state[k].shape != features.state_dict()[wanted[k]].shape]
    if missing or shapes:
        raise WeightsError(f"{path} does not hold VGG16 weights (missing {missing[:3]}, wrong shapes {shapes[:3]})")
    return {wanted[k]: state[k] for k in wanted}


def onet_prelu3() -> nn.Sequential:
    """MTCNN's O-Net up to prelu3, frozen, with the weights facenet-pytorch ships in its wheel (no download).

    O-Net was trained on real face crops to find the face's box and five landmarks (eyes, nose, mouth corners).
    It is fully convolutional up to here: a 64 px image gives 64 channels at 12 x 12.

    Raises:
        ImportError: facenet-pytorch is not installed (``pip install "latentface[face]"``).
    """
    try:
        from facenet_pytorch.models.mtcnn import ONet
    except ImportError as e:
        raise ImportError('the O-Net perceptual loss needs facenet-pytorch: pip install "latentface[face]"') from e
    net = ONet(pretrained=True)
    features = nn.Sequential(*(getattr(net, name) for name in ONET_LAYERS))
    return features.requires_grad_(False).eval()


def perceptual_loss(net: str, weights: str | os.PathLike = "imagenet") -> PerceptualLoss:
    """The perceptual loss over `net`: ``"vgg16"`` (Unsup3D's; `weights` as in `vgg16_relu3_3`) or ``"onet"``
    (`onet_prelu3`, weights from facenet-pytorch; `weights` is not used).

    Raises:
        ValueError: unknown `net`.
    """
    if net == "vgg16":
        return PerceptualLoss(vgg16_relu3_3(weights))
    if net == "onet":
        return PerceptualLoss(onet_prelu3(), mean=ONET_MEAN, std=ONET_STD)
    raise ValueError(f"perceptual net must be one of {PERCEPTUAL_NETS}, got {net!r}")


class PerceptualLoss(nn.Module):
    """Unsup3D's perceptual loss on frozen network features with a confidence map.

    ``(f_recon - f_target)^2 / (2 sigma^2) + log(sigma)``, averaged over the mask average-pooled to the feature
    resolution. A sigma map of another resolution than the features is resized to it (bilinear); with VGG16
    relu3_3 at 64 px both are 16 x 16, as in Unsup3D.

    Args:
        features: the frozen feature network (`vgg16_relu3_3`, `onet_prelu3`).
        mean, std: per-channel normalisation of [0, 1] images before `features` (default ImageNet's).
    """

    def __init__(self, features: nn.Module, mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def embed(self, images: Tensor) -> Tensor:
        """Features (B, C, h, w) of (B, 3, H, W) images in [0, 1] units."""
        return self.features((images - self.mean) / self.std)

    def compare(self, f_recon: Tensor, f_target: Tensor, mask: Tensor, sigma: Tensor | None = None) -> Tensor:
        """Scalar loss of features from `embed`, with the (B, 1, H, W) mask and an optional (B, 1, h, w) sigma."""
        loss = (f_recon - f_target).pow(2)
        size = loss.shape[-2:]
        if sigma is not None:
            if sigma.shape[-2:] != size:
                sigma = F.interpolate(sigma, size=size, mode="bilinear", align_corners=False)
            loss = loss / (2 * sigma.pow(2) + EPS) + (sigma + EPS).log()
        pooled = F.adaptive_avg_pool2d(mask, size).expand_as(loss)
        return (loss * pooled).sum() / pooled.sum()

    def forward(self, recon: Tensor, target: Tensor, mask: Tensor, sigma: Tensor | None = None) -> Tensor:
        """Scalar loss of (B, 3, H, W) images in [0, 1] units, (B, 1, H, W) mask, (B, 1, h, w) sigma."""
        f_recon, f_target = self.embed(torch.cat([recon, target])).chunk(2)
        return self.compare(f_recon, f_target, mask, sigma)

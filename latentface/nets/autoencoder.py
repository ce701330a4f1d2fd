"""Stage-1 networks of the 3D-aware autoencoder (the Unsup3D architecture).

Layer order and indices follow the official networks, so that official checkpoints map onto these modules
by renaming prefixes only (see `latentface.convert`). All convolutions are bias-free. For inputs larger than
64 px, ``repeat = log2(size / 64)`` extra stride-2 blocks are applied; as in the official code, the repeated
block is one module applied ``repeat`` times (its weights are shared).
"""

from __future__ import annotations

from torch import Tensor, nn


class SharedRepeat(nn.Module):
    """Apply one block several times in a row, with the same weights each time.

    Args:
        block: the block to apply.
        times: how often to apply it (>= 1).
    """

    def __init__(self, block: nn.Module, times: int) -> None:
        super().__init__()
        self.block = block
        self.times = times

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.times):
            x = self.block(x)
        return x


def _with_repeat(layers: list[nn.Module], at: int, block: list[nn.Module], repeat: int) -> nn.Sequential:
    """`layers` with the shared `block` inserted at index `at` when `repeat` > 0."""
    if repeat > 0:
        layers = layers[:at] + [SharedRepeat(nn.Sequential(*block), repeat)] + layers[at:]
    return nn.Sequential(*layers)


def _gn(channels: int) -> nn.GroupNorm:
    """GroupNorm with four channels per group (16 groups for 64 channels, as officially)."""
    return nn.GroupNorm(channels // 4, channels)


def _down_convs(cin: int, nf: int, norm: bool, act: type[nn.Module], **act_kw: float) -> list[nn.Module]:
    """Four stride-2 convolutions cin -> nf -> 2nf -> 4nf -> 8nf (optionally with GroupNorm on the first three)."""
    layers: list[nn.Module] = []
    widths = [cin, nf, nf * 2, nf * 4, nf * 8]
    for i in range(4):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1, bias=False))
        if norm and i < 3:
            layers.append(_gn(widths[i + 1]))
        layers.append(act(**act_kw))
    return layers


def _lrelu_down_block(nf: int) -> list[nn.Module]:
    return [nn.Conv2d(nf * 8, nf * 8, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2)]


def conv_encoder(cin: int, zdim: int, nf: int, repeat: int = 0) -> nn.Sequential:
    """Encoder half of an encoder-decoder: image (B,cin,S,S) -> code (B,zdim,1,1), ReLU-activated (>= 0)."""
    layers = _down_convs(cin, nf, norm=True, act=nn.LeakyReLU, negative_slope=0.2)
    layers += [nn.Conv2d(nf * 8, zdim, 4, stride=1, padding=0, bias=False), nn.ReLU()]
    return _with_repeat(layers, 11, _lrelu_down_block(nf), repeat)


def conv_decoder(
    zdim: int, cout: int, nf: int, repeat: int = 0, activation: type[nn.Module] | None = None
) -> nn.Sequential:
    """Decoder half: code (B,zdim,1,1) -> map (B,cout,S,S), followed by `activation` when given."""
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(zdim, nf * 8, 4, stride=1, padding=0, bias=False),
        nn.ReLU(),
        nn.Conv2d(nf * 8, nf * 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.ConvTranspose2d(nf * 8, nf * 4, 4, stride=2, padding=1, bias=False),
        _gn(nf * 4),
        nn.ReLU(),
        nn.Conv2d(nf * 4, nf * 4, 3, padding=1, bias=False),
        _gn(nf * 4),
        nn.ReLU(),
    ]
    for cin, c in ((nf * 4, nf * 2), (nf * 2, nf)):
        layers += [
            nn.ConvTranspose2d(cin, c, 4, stride=2, padding=1, bias=False),
            _gn(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            _gn(c),
            nn.ReLU(),
        ]
    layers += [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(nf, nf, 3, padding=1, bias=False),
        _gn(nf),
        nn.ReLU(),
        nn.Conv2d(nf, nf, 5, padding=2, bias=False),
        _gn(nf),
        nn.ReLU(),
        nn.Conv2d(nf, cout, 5, padding=2, bias=False),
    ]
    if activation is not None:
        layers.append(activation())
    block = [
        nn.ConvTranspose2d(nf * 4, nf * 4, 4, stride=2, padding=1, bias=False),
        _gn(nf * 4),
        nn.ReLU(),
        nn.Conv2d(nf * 4, nf * 4, 3, padding=1, bias=False),
        _gn(nf * 4),
        nn.ReLU(),
    ]
    return _with_repeat(layers, 10, block, repeat)


class EncoderDecoder(nn.Module):
    """Encoder-decoder whose bottleneck is a latent code (texture: netA, shape: netD).

    Args:
        cin: input channels.
        cout: output channels.
        nf: base width.
        zdim: latent size.
        repeat: extra stride-2 blocks for inputs larger than 64 px.
        activation: output activation (``nn.Tanh`` for albedo, ``None`` for raw depth).
    """

    def __init__(
        self, cin: int, cout: int, nf: int, zdim: int, repeat: int = 0, activation: type[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.num_features = zdim
        self.encoder = conv_encoder(cin, zdim, nf, repeat)
        self.decoder = conv_decoder(zdim, cout, nf, repeat, activation)

    def forward_features(self, x: Tensor) -> Tensor:
        """Latent code (B, zdim) of images `x` in [-1, 1]."""
        return self.encoder(x).flatten(1)

    def decode(self, z: Tensor) -> Tensor:
        """Map (B, cout, S, S) decoded from latent codes (B, zdim)."""
        return self.decoder(z[:, :, None, None])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.forward_features(x)
        return z, self.decode(z)


class PlainEncoder(nn.Sequential):
    """Encoder to a small vector with tanh output (light: netL, 4 values; pose: netV, 6 values).

    Args:
        cin: input channels.
        cout: output size.
        nf: base width.
        repeat: extra stride-2 blocks for inputs larger than 64 px.
    """

    def __init__(self, cin: int, cout: int, nf: int, repeat: int = 0) -> None:
        layers = _down_convs(cin, nf, norm=False, act=nn.ReLU)
        layers += [
            nn.Conv2d(nf * 8, nf * 8, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(nf * 8, cout, 1, bias=False),
            nn.Tanh(),
        ]
        block = [nn.Conv2d(nf * 8, nf * 8, 4, stride=2, padding=1, bias=False), nn.ReLU()]
        super().__init__(*_with_repeat(layers, 8, block, repeat))
        self.num_features = cout

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).flatten(1)


class ConfidenceNet(nn.Module):
    """Confidence net (netC): softplus sigma maps for the pixel loss (S px) and the perceptual loss (S/4 px).

    Args:
        cin: input channels.
        nf: base width.
        zdim: bottleneck size.
        repeat: extra stride-2 blocks for inputs larger than 64 px.
    """

    def __init__(self, cin: int, nf: int, zdim: int, repeat: int = 0) -> None:
        super().__init__()
        layers = _down_convs(cin, nf, norm=True, act=nn.LeakyReLU, negative_slope=0.2)
        layers += [
            nn.Conv2d(nf * 8, zdim, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(zdim, nf * 8, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(nf * 8, nf * 4, 4, stride=2, padding=1, bias=False),
            _gn(nf * 4),
            nn.ReLU(),
            nn.ConvTranspose2d(nf * 4, nf * 2, 4, stride=2, padding=1, bias=False),
            _gn(nf * 2),
            nn.ReLU(),
        ]
        up_block = [nn.ConvTranspose2d(nf * 4, nf * 4, 4, stride=2, padding=1, bias=False), _gn(nf * 4), nn.ReLU()]
        trunk = _with_repeat(layers, 18, up_block, repeat)
        self.trunk = _with_repeat(list(trunk), 11, _lrelu_down_block(nf), repeat)
        self.head_pixel = nn.Sequential(
            nn.ConvTranspose2d(nf * 2, nf, 4, stride=2, padding=1, bias=False),
            _gn(nf),
            nn.ReLU(),
            nn.ConvTranspose2d(nf, nf, 4, stride=2, padding=1, bias=False),
            _gn(nf),
            nn.ReLU(),
            nn.Conv2d(nf, 2, 5, padding=2, bias=False),
            nn.Softplus(),
        )
        self.head_perceptual = nn.Sequential(nn.Conv2d(nf * 2, 2, 3, padding=1, bias=False), nn.Softplus())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.head_pixel(h), self.head_perceptual(h)


__all__ = ["ConfidenceNet", "EncoderDecoder", "PlainEncoder", "SharedRepeat", "conv_decoder", "conv_encoder"]

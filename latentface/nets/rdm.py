"""The RDM denoiser: a time-conditioned residual MLP that predicts x0 from (x_t, condition, t).

The released model is a diffusers ``UNet2DModel`` run on 1x1 "images" (one DownBlock2D, one UpBlock2D,
a mid block with self-attention). On a 1x1 input every 3x3 convolution acts through its centre tap only and
self-attention over one token reduces to its value and output projections, so the network is exactly the
MLP below. Written natively it needs no diffusers at run time, and the time path (embedding MLP and every
block's time projection) is computed once per timestep instead of once per sample; without autograd it is
cached across calls and recomputed whenever a time-path parameter changes (moved, reloaded or trained).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of timesteps `t` (shape (N,)), frequency shift 0.

    Args:
        t: timesteps, any numeric dtype.
        dim: embedding size (even).
        max_period: longest period of the sinusoids.

    Returns:
        (N, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-Linear twice, with the projected time embedding added in between.

    Args:
        cin: input width.
        cout: output width (a linear shortcut is used when it differs from `cin`).
        time_dim: width of the time embedding.
        groups: GroupNorm groups.
        eps: GroupNorm epsilon.
    """

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.fc1 = nn.Linear(cin, cout)
        self.time_proj = nn.Linear(time_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.fc2 = nn.Linear(cout, cout)
        self.shortcut = nn.Linear(cin, cout) if cin != cout else None

    def forward(self, x: Tensor, time_bias: Tensor) -> Tensor:
        """`x` (B, cin); `time_bias` = ``time_proj(SiLU(time embedding))``, (B or 1, cout)."""
        h = self.fc1(F.silu(self.norm1(x))) + time_bias
        h = self.fc2(F.silu(self.norm2(h)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class SingleTokenAttention(nn.Module):
    """Self-attention over one token: ``x + out(value(GroupNorm(x)))`` (queries and keys cancel out)."""

    def __init__(self, width: int, groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, width, eps=eps)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.out(self.value(self.norm(x)))


class ConditionalDenoiser(nn.Module):
    """x0-predicting denoiser on latent codes, conditioned on the frame's own code.

    Args:
        latent_dim: size of the latent codes (input is ``2 * latent_dim``: noisy code and condition).
        width: block width (128 released, 1024 first release); the time embedding is ``4 * width``.
        layers_per_block: residual blocks in the down path (the up path has one more).
        norm_groups: GroupNorm groups.
    """

    def __init__(
        self, latent_dim: int = 256, width: int = 128, layers_per_block: int = 2, norm_groups: int = 32
    ) -> None:
        super().__init__()
        time_dim = 4 * width
        self.width = width
        self.num_features = latent_dim
        self.time_mlp = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.input_proj = nn.Linear(2 * latent_dim, width)
        self.down = nn.ModuleList(ResidualBlock(width, width, time_dim, norm_groups) for _ in range(layers_per_block))
        self.mid_in = ResidualBlock(width, width, time_dim, norm_groups)
        self.mid_attn = SingleTokenAttention(width, norm_groups)
        self.mid_out = ResidualBlock(width, width, time_dim, norm_groups)
        self.up = nn.ModuleList(
            ResidualBlock(2 * width, width, time_dim, norm_groups) for _ in range(layers_per_block + 1)
        )
        self.out_norm = nn.GroupNorm(norm_groups, width)
        self.output_proj = nn.Linear(width, latent_dim)
        self._time_cache: dict[int, tuple[tuple[tuple[int, int], ...], list[Tensor]]] = {}

    def _blocks(self) -> list[ResidualBlock]:
        return [*self.down, self.mid_in, self.mid_out, *self.up]

    def time_features(self, t: Tensor | int) -> Tensor:
        """SiLU of the time embedding: (1, 4*width) for a scalar `t`, (B, 4*width) for a vector."""
        t = torch.as_tensor(t, device=self.input_proj.weight.device)
        emb = timestep_embedding(t.reshape(-1), self.width).to(self.input_proj.weight.dtype)
        return F.silu(self.time_mlp(emb))

    @torch.compiler.disable
    def time_biases(self, t: Tensor | int) -> list[Tensor]:
        """Every residual block's projected time embedding, in `_blocks` order; cached for scalar `t` without grad.

        Kept out of `torch.compile` graphs: the cache is Python state that would otherwise be guarded on (one
        recompilation per cached timestep); the compiled forward takes the biases as inputs.
        """
        cacheable = not torch.is_grad_enabled() and (isinstance(t, int) or (isinstance(t, Tensor) and t.ndim == 0))
        if cacheable:
            params = [*self.time_mlp.parameters(), *(p for b in self._blocks() for p in b.time_proj.parameters())]
            key = tuple((p.data_ptr(), p._version) for p in params)
            hit = self._time_cache.get(int(t))
            if hit is not None and hit[0] == key:
                return hit[1]
        time_act = self.time_features(t)
        biases = [block.time_proj(time_act) for block in self._blocks()]
        if cacheable:
            self._time_cache[int(t)] = (key, biases)
        return biases

    def forward(self, x_t: Tensor, cond: Tensor, t: Tensor | int) -> Tensor:
        """Predict x0.

        Args:
            x_t: noisy codes (B, latent_dim).
            cond: conditioning codes (B, latent_dim).
            t: timestep, a scalar shared by the batch (computed once) or a (B,) tensor.

        Returns:
            Predicted clean codes (B, latent_dim).
        """
        biases = iter(self.time_biases(t))
        h = self.input_proj(torch.cat([x_t, cond], dim=1))
        skips = [h]
        for block in self.down:
            h = block(h, next(biases))
            skips.append(h)
        h = self.mid_in(h, next(biases))
        h = self.mid_out(self.mid_attn(h), next(biases))
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), next(biases))
        return self.output_proj(F.silu(self.out_norm(h)))

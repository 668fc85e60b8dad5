"""Causal ConvNeXt blocks at the frame rate: the backbone of the ``stft`` codec family (codec v2).

A ConvNeXt block (Liu et al. 2022, "A ConvNet for the 2020s"; in audio, Vocos, Siuzdak 2023) is a depthwise
convolution over time followed by a per-frame MLP, with a residual connection::

    y = x + gamma * W2 GELU(W1 LayerNorm(DepthwiseConv(x)))

Here the depthwise convolution is causal (``kernel_size - 1`` frames of left padding, none on the right), so frame
``t`` of the output depends on frames ``<= t`` only and the block streams frame by frame. ``gamma`` is a learned
per-channel scale started small (layer scale, Touvron et al. 2021), so a deep stack starts close to the identity.

Because every block runs at the frame rate (50 frames/s for ``fast50``), a stack of them costs a few hundred
MFLOPs per second of audio, where the seed design's residual units run at 16 kHz; that is where codec v2's speed
comes from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2slib.codec.layers import Streamable


class CausalConvNeXtBlock(Streamable):
    """One causal ConvNeXt block; see the module docstring.

    Parameters
    ----------
    dim: channels ``C``.
    kernel_size: frames the depthwise convolution sees (the current one and ``kernel_size - 1`` before it).
    expansion: hidden width of the MLP, times ``dim``.
    layer_scale: initial value of ``gamma``.

    Shapes: ``x: Tensor[B, C, T] -> Tensor[B, C, T]``. Streaming state: the last ``kernel_size - 1`` input frames.
    """

    def __init__(self, dim: int, kernel_size: int = 7, expansion: int = 3, layer_scale: float = 0.1):
        super().__init__()
        self.kernel_size = kernel_size
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, expansion * dim)
        self.fc2 = nn.Linear(expansion * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def _mlp(self, h: Tensor) -> Tensor:
        """The per-frame part on the depthwise output ``h: Tensor[B, C, T]`` -> ``Tensor[B, C, T]``."""
        h = h.transpose(1, 2)  # (B, T, C)
        h = self.fc2(F.gelu(self.fc1(self.norm(h))))  # (B, T, C)
        return (self.gamma * h).transpose(1, 2)  # (B, C, T)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(F.pad(x, (self.kernel_size - 1, 0)))  # causal: pad the past only
        return x + self._mlp(h)

    def initial_state(self, batch_size, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.dwconv.in_channels, self.kernel_size - 1, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] == 0:
            return x, state
        buf = torch.cat([state, x], dim=-1)  # (B, C, kernel_size - 1 + t)
        # the windows that end on the new frames, (B, C, t, kernel_size), times the kernel, summed: the depthwise
        # convolution written out. For the few frames of a streaming step this is ~8x cheaper than the general
        # convolution kernel, whose fixed cost per call dominates at that size (python -m s2slib.bench codec)
        windows = buf.unfold(-1, self.kernel_size, 1)
        h = (windows * self.dwconv.weight[:, None, 0]).sum(-1) + self.dwconv.bias[:, None]  # (B, C, t)
        return x + self._mlp(h), buf[..., buf.shape[-1] - (self.kernel_size - 1):]


class FrameStack(Streamable):
    """``n_blocks`` :class:`CausalConvNeXtBlock` between a 1x1 input projection and a LayerNorm + 1x1 output
    projection: ``Tensor[B, in_dim, T] -> Tensor[B, out_dim, T]``, all at the frame rate.

    The layer scale starts at ``1 / n_blocks`` (Vocos), so the stack's output starts close to a linear map of its
    input whatever its depth.
    """

    def __init__(self, in_dim: int, dim: int, out_dim: int, n_blocks: int, kernel_size: int = 7, expansion: int = 3):
        super().__init__()
        self.proj_in = nn.Conv1d(in_dim, dim, 1)
        self.blocks = nn.ModuleList(
            CausalConvNeXtBlock(dim, kernel_size, expansion, layer_scale=1.0 / n_blocks) for _ in range(n_blocks)
        )
        self.norm = nn.LayerNorm(dim)
        self.proj_out = nn.Linear(dim, out_dim)

    def _out(self, x: Tensor) -> Tensor:
        return self.proj_out(self.norm(x.transpose(1, 2))).transpose(1, 2)  # (B, out_dim, T)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj_in(x)  # (B, dim, T)
        for block in self.blocks:
            x = block(x)
        return self._out(x)

    def initial_state(self, batch_size, device=None, dtype=None) -> tuple:
        return tuple(block.initial_state(batch_size, device, dtype) for block in self.blocks)

    def step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.proj_out.out_features, 0), state
        # the 1x1 input projection as a matrix product: PyTorch runs a 1x1 convolution on a few frames through a
        # general convolution kernel that costs ~2.5x as much per call
        x = F.linear(x.transpose(1, 2), self.proj_in.weight[..., 0], self.proj_in.bias).transpose(1, 2)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self._out(x), tuple(new_state)

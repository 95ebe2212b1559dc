"""Dropout whose mask is drawn by a fast counter-free generator (CPU), same distribution.

PyTorch's CPU dropout draws its Bernoulli mask element by element from one mt19937 stream
on one thread (``bernoulli_``), which made the concept layers' dropout (two layers, about
31M mask entries per layer at 3B = 768 entities, C = 16, FFN 2048) a large part of a map
step on a 2-core CPU. :class:`FastDropout` draws the same distribution faster:

    u_i   = 32 random bits (numpy SFC64, seeded from torch's global generator)
    m_i   = [u_i < round((1 - p) 2^32)]                  keep with probability 1 - p
    y     = x * m / (1 - p),   dL/dx = dL/dy * m / (1 - p)

The keep probability is ``1 - p`` to within 2^-33 (PyTorch's own: within 2^-53), the
scaling is PyTorch's ``1 / (1 - p)``, and the mask is kept as bool (1 byte per entry
instead of a float mask). One SFC64 seed is drawn from ``torch``'s default generator per
call, so ``torch.manual_seed`` still makes a run reproducible, but the masks are not the
ones ``nn.Dropout`` would draw: a seeded run differs from one with ``nn.Dropout``
(``FACEConfig.fast_dropout``). Tensors on other devices use ``F.dropout``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_SEED_HIGH = 2**62  # seeds drawn in [0, 2^62) from torch's generator


def bernoulli_mask(shape: torch.Size | tuple[int, ...], keep: float) -> Tensor:
    """A bool CPU tensor of ``shape`` whose entries are True with probability ``keep``.

    Entries are ``u < round(keep 2^32)`` for independent uniform 32-bit u from a numpy
    SFC64 stream seeded by one draw of torch's default generator.
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep probability must be in [0, 1], got {keep}")
    n = math.prod(shape)
    seed = int(torch.randint(_SEED_HIGH, (1,), dtype=torch.int64))
    bits = np.random.SFC64(seed).random_raw((n + 1) // 2)  # uint64 [ceil(n / 2)]
    # the 32-bit halves as signed ints: uniform on [-2^31, 2^31), so u < t - 2^31 with
    # t = round(keep 2^32) has probability t / 2^32
    words = torch.from_numpy(bits.view(np.int32)[:n]).view(shape)
    threshold = round(keep * 2**32) - 2**31
    if threshold > 2**31 - 1:  # keep == 1 (to 2^-33)
        return torch.ones(shape, dtype=torch.bool)
    return words < threshold


class _MaskedScale(torch.autograd.Function):
    """y = x * mask * scale, dL/dx = dL/dy * mask * scale (mask bool, saved as is)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return x.mul(mask).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return grad.mul(mask).mul_(ctx.scale), None, None


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout of x (any shape) with probability p, mask from :func:`bernoulli_mask`.

    Identity when not training or ``p == 0``; ``F.dropout`` for non-CPU tensors.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, bernoulli_mask(x.shape, 1.0 - p), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, no parameters or state) drawing its mask with
    :func:`bernoulli_mask`: same distribution, different random stream, faster on CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            raise ValueError("FastDropout does not support inplace=True: use nn.Dropout")
        return fast_dropout(x, self.p, self.training)

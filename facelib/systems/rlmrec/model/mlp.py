"""The maps between the profile space (d_s, MiniLM: 384) and the CF space (d).

RLMRec's code uses one two-layer MLP in either direction, hidden width the mean of the
two sizes, LeakyReLU, xavier-uniform weights (biases at torch's default):

    σ↓ (RLMRec-Con): d_s → ⌊(d_s + d)/2⌋ → d      σ↑ (RLMRec-Gen): d → ⌊(d + d_s)/2⌋ → d_s
"""

from __future__ import annotations

from torch import nn


def profile_mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Linear(d_in, h) → LeakyReLU → Linear(h, d_out), h = (d_in + d_out) // 2."""
    if d_in < 1 or d_out < 1:
        raise ValueError(f"an MLP needs positive sizes, got {d_in} -> {d_out}")
    hidden = (d_in + d_out) // 2
    mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, d_out))
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
    return mlp


def l2_penalty(module: nn.Module) -> object:
    """Σ_W ‖W‖² over the module's trainable parameters (RLMRec's ``reg_params``)."""
    return sum(p.pow(2).sum() for p in module.parameters() if p.requires_grad)

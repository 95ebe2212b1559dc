"""The README's example: a new regulariser is a small class with a ``losses`` method that
the one training loop trains beside the backbone, in a phase of its own."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from conftest import backbone_params, fit_config
from facelib.models import Regularizer, make_backbone
from facelib.seed import seed_everything
from facelib.train import Phase, fit


# --8<-- [start:example]
class ProfilePull(Regularizer):
    """weight · mean_u ‖W s_u − e_u‖²: each batch user's CF embedding e_u [B, d] is pulled
    towards a learned linear map W of its profile embedding s_u [B, d_s]."""

    def __init__(self, profiles: Tensor, dim: int, weight: float) -> None:
        super().__init__()
        self.register_buffer("profiles", profiles)        # [U, d_s]
        self.proj = nn.Linear(profiles.shape[1], dim)      # W: its own Adam group (lr, no decay)
        self.weight = weight

    def losses(self, out, users, pos, neg) -> dict[str, Tensor]:
        gap = self.proj(self.profiles[users]) - out.user_emb  # [B, d]
        return {"pull": self.weight * gap.pow(2).sum(1).mean()}
# --8<-- [end:example]


def _gap(model, reg) -> float:
    with torch.no_grad():
        users = model.embeddings_for_eval()[0]
        return float((reg.proj(reg.profiles) - users).pow(2).sum(1).mean())


def test_the_example_regulariser_trains_beside_the_backbone(synthetic_ds):
    ds = synthetic_ds
    rng = seed_everything(0)
    profiles = torch.randn(ds.n_users, 8)
    model = make_backbone("mf", ds.n_users, ds.n_items, backbone_params(dim=16),
                          ds.matrix("train"))
    reg = ProfilePull(profiles, model.dim, weight=1.0)
    before = _gap(model, reg)
    res = fit(model, ds, fit_config(lr=0.01, max_epochs=3, patience=3), rng,
              phases=[Phase("pull", 3, (reg,))])
    assert [r["phase"] for r in res.history] == ["pull"] * 3
    assert res.history[-1]["loss_pull"] < res.history[0]["loss_pull"]
    assert _gap(model, reg) < 0.5 * before  # the embeddings moved the intended way


def test_the_readme_shows_this_example():
    """The README's example is this file's class, line for line."""
    from pathlib import Path

    src = Path(__file__).read_text()
    example = src.split("# --8<-- [start:example]\n")[1].split("# --8<-- [end:example]")[0]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert example.strip() in readme

"""LC-Rec's index stage, faithful: RQ-VAE, Uniform Semantic Mapping (Sinkhorn) and the
collision rounds that make every item's index distinct.

LC-Rec (Zheng et al., ICDE 2024; github RUCAIBox/LC-Rec, ``index/``) quantises an item's
text embedding ``e`` [D] into L discrete codes. Shapes: N rows, D input size, d code size,
L levels, K codes per level::

    z       = Enc(e)                                  MLP, ReLU, no batch norm   [N, d]
    r_1     = z
    c_i     = argmin_k ||r_i - v^i_k||^2              level i's codebook [K, d]
    r_{i+1} = r_i - v^i_{c_i}
    z_hat   = sum_i v^i_{c_i}                         straight-through: z + sg[z_hat - z]
    e_hat   = Dec(z_hat)
    L       = ||e - e_hat||^2 + mean_i (||sg[r_i] - v_{c_i}||^2 + beta ||r_i - sg[v_{c_i}]||^2)

Squared norms are means over elements (``F.mse_loss``), as LC-Rec's code; the quantisation
loss is averaged over levels and weighted 1 (``quant_loss_weight``). As in LC-Rec's code the
residual handed to the next level carries no gradient (``r_{i+1} = sg[r_i - v_{c_i}]``, the
value of ``r_i - (r_i + sg[v - r_i])``), so the encoder learns from the reconstruction and
the first level's commitment only.

Uniform Semantic Mapping (paper Eq. 6) replaces the argmin of the last level by a balanced
assignment::

    min_q  sum_{r in B} sum_k q(k|r) ||r - v_k||^2   s.t.  sum_k q(k|r) = 1,
                                                            sum_r q(k|r) = |B| / K

solved by Sinkhorn-Knopp (:func:`sinkhorn`; epsilon 0.003 on the last level only,
``--sk_epsilons 0 0 0 0.003``, 50 iterations) during training, and once more after training
on each group of items that share a whole index (:func:`assign_indices`, LC-Rec's
``generate_indices.py``: at most 20 rounds). Collisions left after the rounds are reported,
never hidden; ``resolve="nearest_unused"`` is a documented last resort that makes the
indices distinct (needed by :class:`facelib.generative.beam.IndexTrie`).

Differences from LC-Rec's code, all documented here: the input is a small text encoder's
embedding (MiniLM, 384-d), not LLaMA-7B's (4096-d); the MLP is [256, 128, 64] -> 32;
K = 64 codes per level by default (LC-Rec: 256; for < 5k items 64 is enough); training runs
on :func:`facelib.generative.fit.fit_early_stopping` (checkpointed, resumable) and keeps the
evaluation with the lowest collision rate (LC-Rec's ``best_collision_model.pth``), stopping
after ``patience`` evaluations without gain instead of running 10k epochs; K-means runs once
(``n_init=1``); Sinkhorn runs on scaling vectors in float64 (log domain when epsilon is
too small for float64), with a final row normalisation so every row is a distribution
(the argmax of a row is unchanged by it); a collision round that changes nothing ends the
rounds (the rounds are deterministic, so every later round would change nothing either).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelib.generative.codes import LEVEL_LETTERS
from facelib.generative.fit import FitLog, StopRule, fit_early_stopping
from facelib.seed import seed_everything

RESOLVE = ("none", "nearest_unused")
EVAL_KEYS = ("loss", "recon_loss", "quant_loss", "collision_rate", "usage")
LOG_DOMAIN_BELOW = 2.0 / 700.0  # exp(2 / eps) overflows float64 for smaller epsilons


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class RQVAEConfig:
    """LC-Rec's RQ-VAE and index settings (``index/run.sh``), CPU-sized.

    Attributes:
        hidden: encoder layer sizes (the decoder mirrors them); LC-Rec: [2048, ..., 64].
        code_dim: d, the size of z and of every codebook row.
        levels: L, codes per index (at most 8, one code-token letter each).
        codebook_size: K, codes per level (LC-Rec 256; 64 for < 5k items).
        beta: commitment weight.
        kmeans_iters: K-means iterations of the codebook initialisation.
        sk_epsilon: Sinkhorn epsilon of the last level (the others use argmin).
        sk_iters: Sinkhorn iterations.
        lr, weight_decay: AdamW.
        warmup_epochs: linear warm-up, then linear decay to 0 at ``max_epochs`` (LC-Rec's
            ``get_linear_schedule_with_warmup``, 50 warm-up epochs).
        grad_clip: gradient-norm clip (LC-Rec 1.0).
        batch_size: items per step.
        max_epochs, eval_every, patience, rel_delta: the stop rule (:class:`StopRule`);
            ``max_epochs`` is also the horizon of the linear decay.
        select: validation key to keep the best state by (``-`` minimises); LC-Rec keeps
            the lowest collision rate of the argmin codes.
        max_collision_rounds: Sinkhorn rounds of :func:`assign_indices`.
        resolve: what :func:`assign_indices` does with collisions left after the rounds:
            ``"none"`` reports them (LC-Rec), ``"nearest_unused"`` moves each remaining
            duplicate to its nearest free last-level code.
    """

    hidden: tuple[int, ...] = (256, 128, 64)
    code_dim: int = 32
    levels: int = 4
    codebook_size: int = 64
    beta: float = 0.25
    kmeans_iters: int = 100
    sk_epsilon: float = 0.003
    sk_iters: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 50
    grad_clip: float = 1.0
    batch_size: int = 1024
    max_epochs: int = 500
    eval_every: int = 10
    patience: int = 10
    rel_delta: float = 0.0
    select: str = "-collision_rate"
    max_collision_rounds: int = 20
    resolve: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        name = type(self).__name__
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"{name}.hidden must hold sizes >= 1, got {self.hidden}; "
                             f"e.g. hidden=(256, 128, 64)")
        if self.code_dim < 1:
            raise ValueError(f"{name}.code_dim must be >= 1, got {self.code_dim}; e.g. 32")
        check_shared_fields(self, EVAL_KEYS)


def check_shared_fields(config: Any, eval_keys: Sequence[str]) -> None:
    """Validate the fields that :class:`RQVAEConfig` and the semantic tokenizer's config
    share (one-line ValueErrors naming the field and the fix)."""
    name = type(config).__name__
    if not 1 <= config.levels <= len(LEVEL_LETTERS):
        raise ValueError(f"{name}.levels must be in 1..{len(LEVEL_LETTERS)} (one code-token "
                         f"letter per level), got {config.levels}; e.g. levels=4")
    if config.codebook_size < 2:
        raise ValueError(f"{name}.codebook_size must be >= 2, got {config.codebook_size}; "
                         f"e.g. 64 (256 for large catalogues)")
    for key in ("kmeans_iters", "sk_iters", "batch_size", "max_epochs", "eval_every",
                "patience", "max_collision_rounds"):
        if getattr(config, key) < 1:
            raise ValueError(f"{name}.{key} must be >= 1, got {getattr(config, key)}; "
                             f"set a positive integer")
    for key in ("sk_epsilon", "lr", "grad_clip"):
        if not getattr(config, key) > 0:
            raise ValueError(f"{name}.{key} must be > 0, got {getattr(config, key)}; "
                             f"e.g. {getattr(RQVAEConfig, key)}")
    for key in ("beta", "weight_decay", "warmup_epochs"):
        if getattr(config, key) < 0:
            raise ValueError(f"{name}.{key} must be >= 0, got {getattr(config, key)}; "
                             f"e.g. {getattr(RQVAEConfig, key)}")
    if config.resolve not in RESOLVE:
        raise ValueError(f"{name}.resolve must be one of {RESOLVE}, got {config.resolve!r}")
    if config.select.lstrip("-") not in eval_keys:
        raise ValueError(f"{name}.select must name a validation key ({', '.join(eval_keys)}), "
                         f"'-' first to minimise, got {config.select!r}")


class IndexSettings(Protocol):
    """What :func:`assign_indices` reads from a config."""

    batch_size: int
    sk_epsilon: float
    sk_iters: int
    max_collision_rounds: int
    resolve: str


# ----------------------------------------------------------------------------- Sinkhorn
def center_distances(distances: Tensor) -> Tensor:
    """LC-Rec's ``center_distance_for_constraint``: [N, K] -> [N, K] in [-1, 1] (centred on
    the midpoint of the smallest and largest distance, scaled by half their range)."""
    hi, lo = distances.max(), distances.min()
    middle = (hi + lo) / 2
    return (distances - middle) / (hi - middle + 1e-5)


@torch.no_grad()
def sinkhorn(distances: Tensor, epsilon: float, iters: int) -> Tensor:
    """Balanced soft assignment of N rows to K codes: distances [N, K] -> Q [N, K].

    LC-Rec's ``sinkhorn_algorithm`` on :func:`center_distances`: ``Q = exp(-d / eps)``, then
    ``iters`` times normalise each row to mass 1/N and each code (column) to mass 1/K;
    finally ``Q *= N`` (each code holds N/K rows) and every row is normalised to sum 1.
    ``Q.argmax(1)`` spreads the rows about uniformly over the codes. Computed in NumPy
    float64 (small matrices, many calls) on scaling vectors
    (``Q = diag(a) exp(-d/eps) diag(b)``), each row's kernel shifted by its minimum; in
    the log domain when ``epsilon`` < 2/700 (where float64 would underflow).
    """
    if epsilon <= 0 or iters < 1:
        raise ValueError(f"sinkhorn needs epsilon > 0 and iters >= 1, got {epsilon}, {iters}")
    d = center_distances(distances.detach().double()).cpu().numpy()
    n, k = d.shape
    shifted = (d - d.min(1, keepdims=True)) / epsilon  # [N, K] >= 0, row minimum 0
    if epsilon >= LOG_DOMAIN_BELOW:
        kernel = np.exp(-shifted)
        b = np.ones(k)
        for _ in range(iters):
            a = (1.0 / n) / (kernel @ b)
            b = (1.0 / k) / (a @ kernel)
        q = kernel * a[:, None] * b[None, :]
    else:
        from scipy.special import logsumexp

        log_b = np.zeros(k)
        for _ in range(iters):
            log_a = -math.log(n) - logsumexp(log_b[None, :] - shifted, axis=1)
            log_b = -math.log(k) - logsumexp(log_a[:, None] - shifted, axis=0)
        log_q = log_a[:, None] - shifted + log_b[None, :]
        q = np.exp(log_q - log_q.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return torch.as_tensor(q, dtype=distances.dtype, device=distances.device)


def squared_distances(r: Tensor, codebook: Tensor) -> Tensor:
    """``||r||^2 + ||v||^2 - 2 r.v``: r [N, d], codebook [K, d] -> [N, K]."""
    return (r.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None, :]
            - 2.0 * r @ codebook.t())


# ----------------------------------------------------------------------------- quantiser
def kmeans_centres(x: Tensor, k: int, iters: int, random_state: int) -> Tensor:
    """K-means centres [k, d] of x [N, d] (scikit-learn, k-means++, one run, as LC-Rec's
    ``kmeans``); deterministic for a ``random_state``. Needs N >= k."""
    from sklearn.cluster import KMeans

    if len(x) < k:
        raise ValueError(f"K-means needs >= {k} rows (codebook_size), got {len(x)}; "
                         f"lower codebook_size or give more items")
    km = KMeans(n_clusters=k, max_iter=iters, n_init=1, random_state=random_state)
    km.fit(x.detach().cpu().double().numpy())
    return torch.as_tensor(km.cluster_centers_, dtype=x.dtype, device=x.device)


class ResidualQuantizer(nn.Module):
    """L codebooks [K, d] applied to successive residuals (module docstring's equations).

    Args:
        levels: L.
        codebook_size: K.
        dim: d.
        beta: commitment weight.
        sk_epsilons: per level, the Sinkhorn epsilon used when ``forward(use_sk=True)``
            (0: argmin), e.g. ``(0, 0, 0, 0.003)``.
        sk_iters: Sinkhorn iterations.

    The codebooks are plain parameters: :meth:`set_codebook` replaces one (another module
    initialises them from token embeddings) and ``requires_grad_(False)`` freezes it.
    """

    initialised: Tensor

    def __init__(self, levels: int, codebook_size: int, dim: int, beta: float,
                 sk_epsilons: Sequence[float], sk_iters: int) -> None:
        super().__init__()
        if len(sk_epsilons) != levels:
            raise ValueError(f"sk_epsilons has {len(sk_epsilons)} values for {levels} levels; "
                             f"give one per level")
        self.levels, self.codebook_size, self.dim = levels, codebook_size, dim
        self.beta, self.sk_epsilons, self.sk_iters = beta, tuple(sk_epsilons), sk_iters
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1 / codebook_size,
                                                                  1 / codebook_size))
            for _ in range(levels))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def set_codebook(self, level: int, vectors: Tensor) -> None:
        """Replace level ``level``'s codebook by ``vectors`` [K, d] (copied)."""
        book = self.codebooks[level]
        if tuple(vectors.shape) != tuple(book.shape):
            raise ValueError(f"codebook {level} is {tuple(book.shape)}, got "
                             f"{tuple(vectors.shape)}; pass [codebook_size, dim]")
        book.copy_(vectors.to(book))

    def assign(self, level: int, r: Tensor, use_sk: bool = False) -> Tensor:
        """Codes [N] of residuals r [N, d] at ``level``: argmin, or the Sinkhorn argmax
        when ``use_sk`` and the level's epsilon is > 0."""
        d = squared_distances(r.detach(), self.codebooks[level].detach())
        eps = self.sk_epsilons[level]
        if use_sk and eps > 0 and len(r) > 1:
            return sinkhorn(d, eps, self.sk_iters).argmax(1)
        return d.argmin(1)

    def forward(self, z: Tensor, use_sk: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """z [N, d] -> (z_q [N, d] straight-through, codes [N, L] int64, quant_loss scalar).

        ``quant_loss = mean_i (mse(v_{c_i}, sg[r_i]) + beta mse(r_i, sg[v_{c_i}]))``.
        """
        r, z_hat = z, torch.zeros_like(z)
        codes, losses = [], []
        for level, book in enumerate(self.codebooks):
            c = self.assign(level, r, use_sk)
            v = book[c]  # [N, d]
            losses.append(F.mse_loss(v, r.detach()) + self.beta * F.mse_loss(r, v.detach()))
            z_hat = z_hat + v.detach()
            r = (r - v).detach()
            codes.append(c)
        z_q = z + (z_hat - z).detach()
        return z_q, torch.stack(codes, 1), torch.stack(losses).mean()

    @torch.no_grad()
    def residuals(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Argmin codes and each level's input residual: z [N, d] -> (codes [N, L] int64,
        residuals [N, L, d] with ``residuals[:, i] = r_{i+1}``)."""
        r, codes, res = z, [], []
        for level, book in enumerate(self.codebooks):
            c = self.assign(level, r)
            res.append(r)
            codes.append(c)
            r = r - book[c]
        return torch.stack(codes, 1), torch.stack(res, 1)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """``z_hat = sum_i v^i_{c_i}``: codes [N, L] -> [N, d]."""
        return sum(book[codes[:, i]] for i, book in enumerate(self.codebooks))

    @torch.no_grad()
    def kmeans_init(self, z: Tensor, iters: int = RQVAEConfig.kmeans_iters,
                    random_state: int | None = None,
                    snap: Callable[[int, Tensor], Tensor] | None = None) -> None:
        """Initialise level by level by K-means on the residuals the levels before leave:
        z [N, d] (N >= K). ``snap(level, centres [K, d]) -> [K, d]`` may replace the centres
        (e.g. by their nearest token embeddings). ``random_state`` None draws one from
        NumPy's global generator (seeded by :func:`facelib.seed.seed_everything`)."""
        if random_state is None:
            random_state = int(np.random.randint(2**31 - 1))
        r = z.detach()
        for level in range(self.levels):
            centres = kmeans_centres(r, self.codebook_size, iters, random_state + level)
            if snap is not None:
                centres = snap(level, centres)
            self.set_codebook(level, centres)
            r = r - self.codebooks[level][self.assign(level, r)]
        self.initialised.fill_(True)


# ----------------------------------------------------------------------------- RQ-VAE
def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers dims[0] -> ... -> dims[-1], ReLU between them (none after the last, no
    batch norm, no dropout: LC-Rec's ``MLPLayers`` as run)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def level_epsilons(levels: int, sk_epsilon: float) -> tuple[float, ...]:
    """Sinkhorn on the last level only: ``(0, ..., 0, sk_epsilon)``."""
    return (0.0,) * (levels - 1) + (float(sk_epsilon),)


class RQVAE(nn.Module):
    """Encoder -> :class:`ResidualQuantizer` -> decoder on item embeddings [N, D]."""

    def __init__(self, in_dim: int, config: RQVAEConfig) -> None:
        super().__init__()
        dims = (in_dim, *config.hidden, config.code_dim)
        self.encoder = mlp(dims)
        self.decoder = mlp(dims[::-1])
        self.quantizer = ResidualQuantizer(config.levels, config.codebook_size,
                                           config.code_dim, config.beta,
                                           level_epsilons(config.levels, config.sk_epsilon),
                                           config.sk_iters)

    def encode(self, x: Tensor) -> Tensor:
        """z = Enc(e): [N, D] -> [N, d]."""
        return self.encoder(x)

    def forward(self, x: Tensor, use_sk: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """x [N, D] -> (x_hat [N, D], codes [N, L], quant_loss)."""
        z_q, codes, quant_loss = self.quantizer(self.encode(x), use_sk)
        return self.decoder(z_q), codes, quant_loss

    def losses(self, x: Tensor, use_sk: bool = False) -> dict[str, Tensor]:
        """``loss = mse(e, e_hat) + quant_loss`` and its parts (scalars) and the codes."""
        x_hat, codes, quant = self(x, use_sk)
        recon = F.mse_loss(x_hat, x)
        return {"loss": recon + quant, "recon_loss": recon, "quant_loss": quant,
                "codes": codes}


# ----------------------------------------------------------------------------- indices
class Indexable(Protocol):
    """A model :func:`assign_indices` can index: ``encode`` [N, D] -> [N, d] and a
    :class:`ResidualQuantizer` over d."""

    quantizer: ResidualQuantizer

    def encode(self, x: Tensor) -> Tensor: ...


def collision_rate(codes: np.ndarray) -> float:
    """``1 - distinct indices / items`` of codes [I, L]."""
    codes = np.asarray(codes)
    return 1.0 - len(np.unique(codes, axis=0)) / len(codes) if len(codes) else 0.0


def code_usage(codes: np.ndarray, codebook_size: int) -> tuple[float, ...]:
    """Per level, the fraction of the K codes that some item uses: codes [I, L] -> [L]."""
    return tuple(len(np.unique(codes[:, i])) / codebook_size for i in range(codes.shape[1]))


def collision_groups(codes: np.ndarray) -> list[np.ndarray]:
    """The groups (item ids, ascending; groups in index order) of >= 2 items that share a
    whole index: codes [I, L]."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return [order[s:s + c] for s, c in zip(starts, counts) if c > 1]


@dataclass
class ItemIndices:
    """Item indices and how distinct they are.

    Attributes:
        codes: [I, L] int64, row i item i's index.
        collision_rate_before: of the argmin codes.
        collision_rate_after_rounds: after the Sinkhorn rounds.
        collision_rate: of ``codes`` (after the last resort, if used).
        rounds: Sinkhorn rounds run (0 when the argmin codes were distinct).
        fallback_items: items the last resort moved (0 unless ``resolve="nearest_unused"``).
        fallback_above_last: of those, items whose codes changed above the last level
            (their prefix had no free last-level code).
        resolve: the last resort setting used.
        usage: per level, the fraction of codes in use.
        codebook_size: K.
        notes: what is left to know (collisions left, items the last resort moved).
    """

    codes: np.ndarray
    collision_rate_before: float
    collision_rate_after_rounds: float
    collision_rate: float
    rounds: int
    fallback_items: int
    fallback_above_last: int
    resolve: str
    usage: tuple[float, ...]
    codebook_size: int
    notes: list[str] = field(default_factory=list)

    @property
    def collision_free(self) -> bool:
        """Whether every item has its own index (an IndexTrie can be built)."""
        return self.collision_rate == 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (collision rates rounded to 6 digits)."""
        return {"items": int(self.codes.shape[0]), "levels": int(self.codes.shape[1]),
                "codebook_size": self.codebook_size,
                "collision_rate_before": round(self.collision_rate_before, 6),
                "collision_rate_after_rounds": round(self.collision_rate_after_rounds, 6),
                "collision_rate": round(self.collision_rate, 6),
                "collision_free": self.collision_free, "rounds": self.rounds,
                "resolve": self.resolve, "fallback_items": self.fallback_items,
                "fallback_above_last": self.fallback_above_last,
                "usage": [round(u, 6) for u in self.usage], "notes": list(self.notes)}


@torch.no_grad()
def sinkhorn_rounds(codes: np.ndarray, last_residuals: Tensor, codebook: Tensor,
                    epsilon: float, iters: int, max_rounds: int) -> tuple[np.ndarray, int]:
    """LC-Rec's collision rounds: while some items share an index (at most ``max_rounds``
    times), re-assign the last-level code of each such group by :func:`sinkhorn` over the
    group's last-level residuals. codes [I, L] (a changed copy is returned),
    last_residuals [I, d], codebook [K, d] -> (codes, rounds run). A round that changes no
    code ends the rounds."""
    codes = codes.copy()
    rounds = 0
    for _ in range(max_rounds):
        groups = collision_groups(codes)
        if not groups:
            break
        rounds += 1
        changed = False
        for group in groups:
            d = squared_distances(last_residuals[group], codebook)
            new = sinkhorn(d, epsilon, iters).argmax(1).cpu().numpy()
            changed |= bool((new != codes[group, -1]).any())
            codes[group, -1] = new
        if not changed:
            break
    return codes, rounds


def _nearest_free(prefix: tuple[int, ...], r: Tensor, codebooks: Sequence[Tensor],
                  taken: Counter[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The free index nearest to residual r [d] below ``prefix`` (the codes of the first j
    levels; r is level j's input residual): at each level the codes nearest first, skipping
    those whose subtree is full (``taken[p]``: indices in use below prefix p). None when
    every index below ``prefix`` is taken."""
    level, size = len(prefix), codebooks[0].shape[0]
    if taken[prefix] >= size ** (len(codebooks) - level):
        return None
    if level == len(codebooks):
        return prefix
    dist = squared_distances(r[None], codebooks[level])[0]
    for c in torch.sort(dist, stable=True).indices.tolist():
        found = _nearest_free((*prefix, c), r - codebooks[level][c], codebooks, taken)
        if found is not None:
            return found
    return None


def _take(index: tuple[int, ...], taken: Counter[tuple[int, ...]]) -> None:
    for j in range(len(index) + 1):
        taken[index[:j]] += 1


@torch.no_grad()
def nearest_unused(codes: np.ndarray, residuals: Tensor, codebooks: Sequence[Tensor]
                   ) -> tuple[np.ndarray, int, int]:
    """Last resort: make the indices distinct by moving the duplicates.

    In each group of items that share an index (groups in index order), the item nearest
    its last-level code keeps the index (ties: lowest id); the others, nearest first, take
    the nearest last-level code whose whole index no item uses yet. Only when all K codes
    under an item's prefix are taken does it change a higher level: the deepest level j
    whose subtree has a free index, searched nearest code first at every level below it
    (:func:`_nearest_free`), so a free index is found whenever one exists. Deterministic.

    Args:
        codes: [I, L] indices (only last levels changed since the argmin codes).
        residuals: [I, L, d] each level's input residual of the argmin codes.
        codebooks: L tensors [K, d].

    Returns:
        (codes, items moved, of which moved above the last level).
    """
    codes = codes.copy()
    taken: Counter[tuple[int, ...]] = Counter()
    for row in {tuple(row) for row in codes.tolist()}:
        _take(row, taken)
    moved = above = 0
    levels = codes.shape[1]
    for group in collision_groups(codes):
        d = squared_distances(residuals[group, -1], codebooks[-1]).cpu().numpy()  # [g, K]
        own = d[np.arange(len(group)), codes[group, -1]]
        for j in np.lexsort((group, own))[1:]:  # nearest first, then lowest id
            item = int(group[j])
            row = tuple(codes[item].tolist())
            new = None
            for level in range(levels - 1, -1, -1):  # keep as deep a prefix as possible
                new = _nearest_free(row[:level], residuals[item, level], codebooks, taken)
                if new is not None:
                    break
            if new is None:
                raise ValueError(f"no free index is left for item {item}: more items than "
                                 f"codebook_size ** levels; raise codebook_size or levels")
            above += new[:-1] != row[:-1]
            codes[item] = new
            _take(new, taken)
            moved += 1
    return codes, moved, above


@torch.no_grad()
def encode_all(model: Indexable, embeddings: Tensor, batch_size: int) -> Tensor:
    """``model.encode`` in eval mode, batch by batch: [I, D] -> [I, d]."""
    was_training = model.training
    model.eval()
    z = torch.cat([model.encode(embeddings[s:s + batch_size])
                   for s in range(0, len(embeddings), batch_size)])
    model.train(was_training)
    return z


def assign_indices(model: Indexable, embeddings: Tensor | np.ndarray,
                   config: IndexSettings) -> ItemIndices:
    """Every item's index, as LC-Rec's ``generate_indices.py``: embeddings [I, D] ->
    :class:`ItemIndices`.

    Argmin codes first; then :func:`sinkhorn_rounds` (``config.max_collision_rounds``,
    ``config.sk_epsilon``, ``config.sk_iters``) on the last level of each colliding group;
    then, with ``config.resolve == "nearest_unused"``, :func:`nearest_unused`. Collisions
    left are kept in the result (``collision_rate > 0``, a note) and warned about.
    """
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    quantizer = model.quantizer
    codes_t, residuals = quantizer.residuals(encode_all(model, x, config.batch_size))
    codes = codes_t.cpu().numpy().astype(np.int64)
    last, book = residuals[:, -1], quantizer.codebooks[-1].detach()
    before = collision_rate(codes)
    codes, rounds = sinkhorn_rounds(codes, last, book, config.sk_epsilon, config.sk_iters,
                                    config.max_collision_rounds)
    after_rounds = collision_rate(codes)
    moved = above = 0
    if config.resolve == "nearest_unused" and after_rounds > 0:
        codes, moved, above = nearest_unused(codes, residuals,
                                              [b.detach() for b in quantizer.codebooks])
    notes = []
    if after_rounds > 0:
        left = sum(len(g) for g in collision_groups(codes))
        notes.append(f"{round(after_rounds * len(codes))} index collisions left after "
                     f"{rounds} Sinkhorn rounds; "
                     + (f"resolve='nearest_unused' moved {moved} items ({above} of them "
                        f"above the last level)" if moved else
                        f"{left} items share an index: an IndexTrie cannot be built; use "
                        f"resolve='nearest_unused'"))
        if not moved:
            warnings.warn(notes[-1], RuntimeWarning, stacklevel=2)
    return ItemIndices(codes=codes, collision_rate_before=before,
                       collision_rate_after_rounds=after_rounds,
                       collision_rate=collision_rate(codes), rounds=rounds,
                       fallback_items=moved, fallback_above_last=above,
                       resolve=config.resolve,
                       usage=code_usage(codes, quantizer.codebook_size),
                       codebook_size=quantizer.codebook_size, notes=notes)


# ----------------------------------------------------------------------------- training
def as_embeddings(values: Tensor | np.ndarray, name: str, min_rows: int) -> Tensor:
    """A finite float32 [I, D] tensor with I >= ``min_rows`` (ValueError otherwise)."""
    x = torch.as_tensor(values, dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D [rows, dim] array, got shape {tuple(x.shape)}")
    if len(x) < min_rows:
        raise ValueError(f"{name} has {len(x)} rows, fewer than codebook_size = {min_rows} "
                         f"(K-means needs one row per code); lower codebook_size")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or inf values; clean the embeddings first")
    return x.contiguous()


def linear_warmup(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate factor of ``get_linear_schedule_with_warmup`` at ``step``
    (0-based): ``step / warmup`` during warm-up, then linear to 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def first_batch(x: Tensor, batch_size: int, rng: np.random.Generator) -> Tensor:
    """A random batch of ``batch_size`` rows of x (all of them when fewer): the rows the
    codebooks are initialised on (LC-Rec: the first training batch)."""
    take = rng.permutation(len(x))[:batch_size]
    return x[torch.as_tensor(np.sort(take))]


def run_epoch(module: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
              step_losses: Callable[[Tensor], dict[str, Tensor]], epoch: int,
              config: Any, rng: np.random.Generator) -> dict[str, float]:
    """One epoch over shuffled batches of x [I, D]: ``step_losses(batch)["loss"]`` is
    minimised with gradient clipping at ``config.grad_clip`` and the learning rate set by
    :func:`linear_warmup` (computed from the epoch, so a resumed run continues it). Returns
    the mean of every scalar loss."""
    n_batches = math.ceil(len(x) / config.batch_size)
    total, warm = config.max_epochs * n_batches, config.warmup_epochs * n_batches
    perm = torch.as_tensor(rng.permutation(len(x)))
    sums: dict[str, float] = {}
    params = [p for p in module.parameters() if p.requires_grad]
    for b in range(n_batches):
        lr = config.lr * linear_warmup((epoch - 1) * n_batches + b, warm, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = step_losses(x[perm[b * config.batch_size:(b + 1) * config.batch_size]])
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        for key, value in losses.items():
            if value.ndim == 0:
                sums[key] = sums.get(key, 0.0) + float(value.detach())
    return {key: value / n_batches for key, value in sums.items()}


@torch.no_grad()
def code_metrics(codes: Tensor | np.ndarray, codebook_size: int) -> dict[str, float]:
    """``collision_rate``, mean ``usage`` and ``usage_l{i}`` (1-based) of codes [I, L]."""
    codes = np.asarray(torch.as_tensor(codes).cpu())
    usage = code_usage(codes, codebook_size)
    return {"collision_rate": collision_rate(codes), "usage": float(np.mean(usage)),
            **{f"usage_l{i + 1}": u for i, u in enumerate(usage)}}


@torch.no_grad()
def evaluate_batches(losses: Callable[[Tensor], dict[str, Tensor]], x: Tensor,
                     batch_size: int, codebook_size: int) -> dict[str, float]:
    """Row-weighted mean of each scalar of ``losses(batch)`` over x [I, D], plus
    :func:`code_metrics` of the batches' ``codes``."""
    sums: dict[str, float] = {}
    codes = []
    for s in range(0, len(x), batch_size):
        batch = x[s:s + batch_size]
        out = losses(batch)
        codes.append(out.pop("codes"))
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(batch)
    return {**{k: v / len(x) for k, v in sums.items()},
            **code_metrics(torch.cat(codes), codebook_size)}


def stop_rule(config: Any) -> StopRule:
    """The config's :class:`StopRule`."""
    return StopRule(max_epochs=config.max_epochs, eval_every=config.eval_every,
                    patience=config.patience, select=config.select,
                    rel_delta=config.rel_delta)


def fit_quantizer(model: RQVAE | nn.Module, x: Tensor, config: Any, rng: np.random.Generator,
                  run_params: dict[str, Any], *, checkpoint_path: Path | None,
                  resume: bool, progress: bool, desc: str) -> FitLog:
    """Train an initialised quantiser model (``model.losses(x, use_sk)``) on the rows of
    x [I, D] until ``config``'s stop rule: AdamW over its trainable parameters with
    warm-up and linear decay, Sinkhorn on the last level in training steps, argmin codes in
    evaluation (``loss``, ``recon_loss``, ``quant_loss``, ``collision_rate``, ``usage``)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)

    def train_epoch(epoch: int) -> dict[str, float]:
        return run_epoch(model, optimizer, x, lambda b: model.losses(b, use_sk=True), epoch,
                         config, rng)

    def evaluate() -> dict[str, float]:
        return evaluate_batches(model.losses, x, config.batch_size, config.codebook_size)

    return fit_early_stopping(model, optimizer, train_epoch, evaluate, stop_rule(config), rng,
                              checkpoint_path=checkpoint_path, resume=resume,
                              run_params=run_params, progress=progress, desc=desc)


def train_rqvae(embeddings: Tensor | np.ndarray, config: RQVAEConfig, seed: int, *,
                checkpoint_path: Path | None = None, resume: bool = False,
                progress: bool = False) -> tuple[RQVAE, FitLog]:
    """Train LC-Rec's RQ-VAE on item embeddings [I, D] (float32) and return it with the
    best state (by ``config.select``) loaded, and its :class:`FitLog`.

    Seeds everything with ``seed``; initialises the codebooks by K-means on the encoder
    outputs of one random batch; AdamW with warm-up and linear decay; training steps use
    Sinkhorn on the last level (LC-Rec's ``use_sk=True``), evaluation uses argmin codes and
    reports ``loss``, ``recon_loss``, ``quant_loss``, ``collision_rate`` and ``usage``.
    """
    x = as_embeddings(embeddings, "embeddings", config.codebook_size)
    rng = seed_everything(seed)
    model = RQVAE(x.shape[1], config)
    model.eval()
    with torch.no_grad():
        init = model.encode(first_batch(x, config.batch_size, rng))
    model.quantizer.kmeans_init(init, config.kmeans_iters, int(rng.integers(2**31 - 1)))
    log = fit_quantizer(model, x, config, rng, {"rqvae": asdict(config), "seed": seed,
                                                "shape": list(x.shape)},
                        checkpoint_path=checkpoint_path, resume=resume, progress=progress,
                        desc="rqvae")
    return model, log

"""Language-model backends for the generative recommenders (LC-Rec, Semantic Convergence).

One interface, :class:`GenerativeBackend`, over two implementations:

- :class:`TinyBackend` (``"tiny"``, the CPU default): :class:`TinyCausalLM`, a small
  decoder-only transformer trained *from scratch* on the instruction examples, with
  :class:`TinyTokenizer` (specials, one token per code, and the MiniLM word pieces seen in
  the training text). It has no pretrained language knowledge: the language tasks (MUT,
  ASY, ITE, PER) test the mechanism only.
- :class:`HFBackend` (``"hf"``, for GPU users): any Hugging Face causal LM loaded from a
  local folder, the code tokens added as new tokens, optionally LoRA through ``peft``.

Both train as LC-Rec's ``--only_train_response``: the sequence is prompt ids then response
ids (ending with the end-of-sequence token); the loss is the mean next-token NLL over the
response tokens only (labels -100 on the prompt and the padding). Batches are right-padded;
a too-long example loses the start of its prompt, never its response. Generation is
LC-Rec's prefix-constrained beam search (:func:`facelib.generative.beam.beam_search`):
at depth t the model's log-softmax over the full vocabulary is gathered at level t's K code
tokens (:meth:`GenerativeBackend.code_scorer`).

Nothing is loaded at import: the MiniLM tokenizer loads when a :class:`TinyTokenizer` first
splits text with the default splitter, ``transformers`` when an :class:`HFBackend` is made.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelib.device import resolve_device
from facelib.generative.beam import IndexTrie, NextCodeScores, beam_search
from facelib.generative.codes import CODE_PATTERN, Example, code_vocabulary
from facelib.generative.fit import FitLog, StopRule, fit_early_stopping

BACKENDS = ("tiny", "hf")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<sep>")
IGNORE = -100  # label of the positions the loss skips (prompt, padding)

Split = Callable[[str], list[str]]


@runtime_checkable
class GenerativeBackend(Protocol):
    """What the generative recommenders need from a language model.

    Attributes:
        description: one line for reports: which model, how big, pretrained or not.
    """

    description: str

    def fit(self, examples: Callable[[int], Sequence[Example]],
            evaluate: Callable[[], dict[str, float]], rule: StopRule,
            rng: np.random.Generator, *, checkpoint_path: Path | None = None,
            resume: bool = False, progress: bool = False) -> FitLog:
        """Train on ``examples(epoch)`` (epochs 1-based, rebuilt every epoch so templates
        can be re-drawn) until ``rule`` stops; ``evaluate()`` runs in eval mode under
        ``no_grad`` and gives the validation dict ``rule.select`` reads. Ends with the best
        state loaded; returns the log."""
        ...

    def code_scorer(self, prompt: str, levels: int) -> NextCodeScores:
        """For ``prompt``, the function ``prefixes [B, t] int (code values of levels
        0..t-1) -> [B, K]`` log-probabilities of level t's K code tokens (log-softmax over
        the full vocabulary, gathered at those tokens), for t < ``levels``."""
        ...

    def generate_items(self, prompts: Sequence[str], trie: IndexTrie, beam: int
                       ) -> list[list[tuple[int, float]]]:
        """Per prompt, the ``beam`` best legal items ``(item, log-probability)`` of the
        constrained beam search over ``trie``, best first."""
        ...

    def sequence_logprob(self, prompt: str, response: str) -> float:
        """log p(response tokens, end-of-sequence included | prompt): the score compared
        across candidate responses in the yes/no and pairwise tasks."""
        ...

    def mean_response_nll(self, examples: Sequence[Example]) -> float:
        """The training loss, teacher-forced, on ``examples`` in eval mode: the mean NLL
        per response token (a validation loss for early stopping)."""
        ...


# ---------------------------------------------------------------------------- shared pieces


def _segments(text: str) -> Iterator[tuple[bool, str]]:
    """``text`` cut into ``(is_code, piece)``: code tokens (``<a_3>``) whole, the text
    between them as is (empty pieces dropped)."""
    start = 0
    for match in CODE_PATTERN.finditer(text):
        if match.start() > start:
            yield False, text[start:match.start()]
        yield True, match.group(0)
        start = match.end()
    if start < len(text):
        yield False, text[start:]


def collate(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, max_len: int
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded batch of ``(prompt ids, response ids)`` pairs.

    A pair longer than ``max_len`` keeps the end of its prompt (left truncation) and its
    whole response. Returns ``ids`` [B, T] (``pad_id`` after each sequence), ``labels``
    [B, T] (the ids on response positions, :data:`IGNORE` on prompt and padding; aligned
    with ``ids``, i.e. position j's logits predict ``labels[:, j + 1]``) and ``mask`` [B, T]
    (1 on real tokens), T the longest kept sequence.
    """
    rows = []
    for prompt, response in pairs:
        if not 1 <= len(response) < max_len:
            raise ValueError(f"a response of {len(response)} tokens does not fit max_len="
                             f"{max_len} with at least one prompt token")
        rows.append((list(prompt)[-(max_len - len(response)):], list(response)))
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (prompt, response) in enumerate(rows):
        n, m = len(prompt), len(response)
        ids[b, :n + m] = torch.tensor(prompt + response, dtype=torch.long)
        labels[b, n:n + m] = torch.tensor(response, dtype=torch.long)
        mask[b, :n + m] = 1
    return ids, labels, mask


def length_batches(lengths: Sequence[int], batch_size: int, pool: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of example indices, of similar lengths when ``pool`` > 1.

    A random permutation is cut into pools of ``pool * batch_size`` examples; each pool is
    sorted by length (stable) and cut into batches; the batches are then shuffled. Padding
    to a batch's longest sequence then wastes little. ``pool`` = 1 gives the permutation cut
    into consecutive batches (no further draw from ``rng``).
    """
    if batch_size < 1 or pool < 1:
        raise ValueError(f"batch_size ({batch_size}) and pool ({pool}) must be >= 1")
    order = rng.permutation(len(lengths))
    if pool == 1:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    size = pool * batch_size
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def response_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-token NLL [B, T-1] of the labelled tokens (0 where ignored): logits [B, T, V]
    at position j predict ``labels[:, j + 1]`` ([B, T], :data:`IGNORE` skipped)."""
    targets = labels[:, 1:]
    return F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                           ignore_index=IGNORE, reduction="none")


def response_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token NLL over the response tokens of the batch (LC-Rec's
    ``--only_train_response``): logits [B, T, V], labels [B, T] -> scalar."""
    count = (labels[:, 1:] != IGNORE).sum()
    if not int(count):
        raise ValueError("the batch has no response token to train on")
    return response_nll(logits, labels).sum() / count


# ------------------------------------------------------------------- the shared mechanics


class _CausalBackend:
    """Training, scoring and generation shared by the tiny and the Hugging Face backends;
    a subclass supplies the tokenisation, the module and its logits."""

    description: str = ""
    levels: int
    codebook_size: int
    batch_size: int
    max_len: int
    clip: float
    device: torch.device
    bf16: bool = False
    length_pool: int = 1

    # --- supplied by subclasses
    def _prepare(self, first: Sequence[Example], rng: np.random.Generator) -> None:
        """Build whatever needs the training data (tokenizer, model) before training."""

    def _module(self) -> nn.Module:
        raise NotImplementedError

    def _encode_prompt(self, prompt: str) -> list[int]:
        raise NotImplementedError

    def _encode_response(self, response: str) -> list[int]:
        raise NotImplementedError

    def _pad_id(self) -> int:
        raise NotImplementedError

    def _code_ids(self) -> Tensor:
        """[levels, K] token id of each code."""
        raise NotImplementedError

    def _logits(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids [B, T], mask [B, T] (on the device) -> logits [B, T, V]."""
        raise NotImplementedError

    def _response_loss(self, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
        """:func:`response_loss` of the batch, with the output layer applied at the n
        response positions only (the prompt's logits are never needed)."""
        targets = labels[:, 1:] != IGNORE  # [B, T-1]
        if not bool(targets.any()):
            raise ValueError("the batch has no response token to train on")
        with self._autocast():
            logits = self._logits_at(ids, mask, F.pad(targets, (0, 1)))  # [n, V]
        return F.cross_entropy(logits.float(), labels[:, 1:][targets])

    def _logits_at(self, ids: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        """The logits [n, V] at the n ``True`` cells of positions [B, T] (row-major): the
        response positions in training, the last one in scoring."""
        return self._logits(ids, mask)[positions]

    def _optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def _run_params(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[nn.Module]:
        """Eval mode, no gradient (the previous mode is restored after)."""
        module = self._module()
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), self._autocast():
                yield module
        finally:
            module.train(was_training)

    def _encode(self, example: Example) -> tuple[list[int], list[int]]:
        return self._encode_prompt(example.prompt), self._encode_response(example.response)

    def fit(self, examples: Callable[[int], Sequence[Example]],
            evaluate: Callable[[], dict[str, float]], rule: StopRule,
            rng: np.random.Generator, *, checkpoint_path: Path | None = None,
            resume: bool = False, progress: bool = False) -> FitLog:
        """See :meth:`GenerativeBackend.fit`. Every epoch shuffles with ``rng`` (batches of
        similar lengths when ``length_pool`` > 1: :func:`length_batches`); AdamW,
        gradient norm clipped at ``clip`` (0: off); the epoch's ``loss`` is the mean NLL
        per response token."""
        first = list(examples(1))
        if not first:
            raise ValueError("examples(1) gave no training example")
        self._prepare(first, rng)
        module = self._module()
        optimizer = self._optimizer()
        params = [p for p in module.parameters() if p.requires_grad]

        def train_epoch(epoch: int) -> dict[str, float]:
            data = first if epoch == 1 else list(examples(epoch))
            pairs = [self._encode(example) for example in data]
            lengths = [len(prompt) + len(response) for prompt, response in pairs]
            total, count = 0.0, 0
            for chosen in length_batches(lengths, self.batch_size, self.length_pool, rng):
                batch = [pairs[i] for i in chosen]
                ids, labels, mask = (t.to(self.device) for t in
                                     collate(batch, self._pad_id(), self.max_len))
                loss = self._response_loss(ids, mask, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip > 0:
                    nn.utils.clip_grad_norm_(params, self.clip)
                optimizer.step()
                n = int((labels[:, 1:] != IGNORE).sum())
                total, count = total + loss.item() * n, count + n
            return {"loss": total / count}

        return fit_early_stopping(module, optimizer, train_epoch, evaluate, rule, rng,
                                  checkpoint_path=checkpoint_path, resume=resume,
                                  run_params=self._run_params(), progress=progress,
                                  desc=type(self).__name__)

    def code_scorer(self, prompt: str, levels: int) -> NextCodeScores:
        """See :meth:`GenerativeBackend.code_scorer`: one forward per call over the batch
        of prefixes [B, t] (prompt ids, then the prefix's code tokens), returning a float64
        array [B, K]. The prompt is left-truncated as in training for a response of
        ``levels`` codes plus the end token."""
        if not 1 <= levels <= self.levels:
            raise ValueError(f"levels = {levels}: the backend knows codes of levels "
                             f"1..{self.levels}")
        codes = self._code_ids()  # [L, K]
        keep = self.max_len - levels - 1
        if keep < 1:
            raise ValueError(f"max_len={self.max_len} leaves no room for a prompt before "
                             f"{levels} codes")
        prompt_ids = torch.tensor(self._encode_prompt(prompt)[-keep:], dtype=torch.long)

        def scores(prefixes: np.ndarray) -> np.ndarray:
            prefixes = np.asarray(prefixes, dtype=np.int64)
            if prefixes.ndim != 2 or not len(prefixes):
                raise ValueError(f"prefixes must be [B, t] with B >= 1, got {prefixes.shape}")
            t = prefixes.shape[1]
            if t >= levels:
                raise ValueError(f"prefixes of {t} codes: the index has only {levels} levels")
            if t and (prefixes.min() < 0 or prefixes.max() >= self.codebook_size):
                raise ValueError(f"code values must be in [0, {self.codebook_size})")
            prefix_tokens = codes[torch.arange(t).expand(len(prefixes), t),
                                  torch.from_numpy(prefixes)]  # [B, t]
            ids = torch.cat([prompt_ids.expand(len(prefixes), -1), prefix_tokens], dim=1)
            with self._inference():
                ids = ids.to(self.device)
                last = torch.zeros_like(ids, dtype=torch.bool)
                last[:, -1] = True
                logits = self._logits_at(ids, torch.ones_like(ids), last).float()  # [B, V]
                logp = torch.log_softmax(logits, dim=-1)[:, codes[t].to(self.device)]
            return logp.double().cpu().numpy()

        return scores

    def generate_items(self, prompts: Sequence[str], trie: IndexTrie, beam: int
                       ) -> list[list[tuple[int, float]]]:
        """See :meth:`GenerativeBackend.generate_items`: :func:`beam_search` per prompt,
        one forward per depth over that prompt's kept prefixes [<= beam, t]."""
        return [beam_search(self.code_scorer(prompt, trie.depth), trie, beam)
                for prompt in prompts]

    def mean_response_nll(self, examples: Sequence[Example]) -> float:
        """See :meth:`GenerativeBackend.mean_response_nll` (batches of ``batch_size``)."""
        if not examples:
            raise ValueError("no example to compute a validation loss on")
        pairs = [self._encode(example) for example in examples]
        total, count = 0.0, 0
        with self._inference():
            for start in range(0, len(pairs), self.batch_size):
                ids, labels, mask = (t.to(self.device) for t in collate(
                    pairs[start:start + self.batch_size], self._pad_id(), self.max_len))
                n = int((labels[:, 1:] != IGNORE).sum())
                total += float(self._response_loss(ids, mask, labels)) * n
                count += n
        return total / count

    def sequence_logprob(self, prompt: str, response: str) -> float:
        """See :meth:`GenerativeBackend.sequence_logprob` (one forward of [1, T])."""
        ids, labels, mask = collate([self._encode(Example("", prompt, response))],
                                    self._pad_id(), self.max_len)
        with self._inference():
            logits = self._logits(ids.to(self.device), mask.to(self.device))
            nll = response_nll(logits, labels.to(self.device))  # [1, T-1]
        return -float(nll.sum())


# -------------------------------------------------------------------------- tiny backend


@functools.lru_cache(maxsize=1)
def _minilm_tokenizer() -> Any:
    """The MiniLM WordPiece tokenizer, loaded offline from its package on first use."""
    from transformers import AutoTokenizer

    from facelib.text.encoder import model_path

    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


def minilm_split(text: str) -> list[str]:
    """MiniLM's word pieces of ``text`` (lower-cased WordPiece, ``##`` continuations)."""
    return list(_minilm_tokenizer().tokenize(text))


class TinyTokenizer:
    """Vocabulary of the tiny model: :data:`SPECIALS`, then every code token of
    ``code_vocabulary(levels, codebook_size)`` (one id each), then word pieces.

    Args:
        pieces: the word pieces to keep, in id order (specials and codes among them are
            skipped); every other piece maps to ``<unk>``.
        levels, codebook_size: the code tokens ``L * K``.
        split: ``str -> list[str]`` word-piece splitter of the text between code tokens;
            ``None``: :func:`minilm_split`.
    """

    def __init__(self, pieces: Sequence[str], levels: int, codebook_size: int,
                 split: Split | None = None) -> None:
        if levels < 1 or codebook_size < 1:
            raise ValueError(f"levels ({levels}) and codebook_size ({codebook_size}) must "
                             f"be >= 1")
        self.levels, self.codebook_size = levels, codebook_size
        self.split: Split = split if split is not None else minilm_split
        reserved = [*SPECIALS, *code_vocabulary(levels, codebook_size)]
        self.vocab: list[str] = list(dict.fromkeys([*reserved, *pieces]))
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id, self.sep_id = range(len(SPECIALS))

    @classmethod
    def fit(cls, texts: Iterable[str], levels: int, codebook_size: int,
            split: Split | None = None, max_pieces: int = 10_000) -> TinyTokenizer:
        """Keep the ``max_pieces`` most frequent pieces of ``texts`` (ties: alphabetical)."""
        if max_pieces < 0:
            raise ValueError(f"max_pieces must be >= 0, got {max_pieces}")
        split = split if split is not None else minilm_split
        counts = Counter(piece for text in texts for is_code, part in _segments(text)
                         if not is_code for piece in split(part))
        pieces = sorted(counts, key=lambda p: (-counts[p], p))[:max_pieces]
        return cls(pieces, levels, codebook_size, split)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokens(self, text: str) -> list[str]:
        """Code tokens whole, the rest split into word pieces."""
        return [tok for is_code, part in _segments(text)
                for tok in ([part] if is_code else self.split(part))]

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` (unknown pieces and literal specials -> ``<unk>``)."""
        out = []
        for token in self.tokens(text):
            i = self.index.get(token, self.unk_id)
            out.append(self.unk_id if i < len(SPECIALS) else i)
        return out

    def encode_prompt(self, prompt: str) -> list[int]:
        """``<bos>`` prompt ``<sep>``."""
        return [self.bos_id, *self.ids(prompt), self.sep_id]

    def encode_response(self, response: str) -> list[int]:
        """response ``<eos>``."""
        return [*self.ids(response), self.eos_id]

    def encode(self, example: Example) -> tuple[list[int], list[int]]:
        """(prompt ids, response ids) of ``example``; the response ends with ``<eos>``."""
        return self.encode_prompt(example.prompt), self.encode_response(example.response)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``: pieces joined by spaces (``##`` pieces glued on), consecutive
        code tokens glued together."""
        out: list[str] = []
        prev_code = False
        for i in ids:
            token = self.vocab[int(i)]
            if skip_special and int(i) < len(SPECIALS):
                continue
            is_code = CODE_PATTERN.fullmatch(token) is not None
            if out and token.startswith("##") and not is_code:
                out.append(token[2:])
            elif out and not (is_code and prev_code):
                out.append(" " + token)
            else:
                out.append(token)
            prev_code = is_code
        return "".join(out)

    def code_ids(self) -> np.ndarray:
        """[levels, K] id of each code token."""
        first = len(SPECIALS)
        return first + np.arange(self.levels * self.codebook_size).reshape(
            self.levels, self.codebook_size)


@dataclass(frozen=True)
class TinyLMConfig:
    """The tiny model and its optimiser.

    Attributes:
        layers, dim, heads: transformer depth, width, attention heads (dim % heads == 0).
        ffn: feed-forward width as a multiple of ``dim``.
        dropout: on embeddings, attention, residual branches.
        max_len: longest sequence (learned positions); longer prompts are left-truncated.
        lr, weight_decay: AdamW (decay on matrices only, as the HF Trainer: not on biases
            and norms).
        batch_size: examples per step.
        clip: gradient-norm clipping (0: off).
        length_pool: batches drawn from pools of this many batches sorted by length
            (:func:`length_batches`; 1: plain shuffled batches).
    """

    layers: int = 2
    dim: int = 128
    heads: int = 4
    ffn: int = 4
    dropout: float = 0.0   # as LLaMA (LC-Rec's LM); > 0 also loses the fused attention kernel
    max_len: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 64
    clip: float = 1.0
    length_pool: int = 16

    def __post_init__(self) -> None:
        for key in ("layers", "dim", "heads", "ffn", "batch_size", "length_pool"):
            if getattr(self, key) < 1:
                raise ValueError(f"TinyLMConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.dim % self.heads:
            raise ValueError(f"TinyLMConfig.dim ({self.dim}) must be divisible by heads "
                             f"({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TinyLMConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.max_len < 2:
            raise ValueError(f"TinyLMConfig.max_len must be >= 2, got {self.max_len}")
        if not self.lr > 0:
            raise ValueError(f"TinyLMConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.clip < 0:
            raise ValueError(f"TinyLMConfig.weight_decay ({self.weight_decay}) and clip "
                             f"({self.clip}) must be >= 0")


class _Block(nn.Module):
    """Pre-norm transformer block with causal self-attention: [B, T, D] -> [B, T, D]."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.heads, self.p = config.heads, config.dropout
        self.norm1 = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        self.ffn = nn.Sequential(nn.Linear(config.dim, config.ffn * config.dim), nn.GELU(),
                                 nn.Linear(config.ffn * config.dim, config.dim))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads
                                                ).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, d/H]
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TinyCausalLM(nn.Module):
    """Decoder-only transformer from scratch: token + learned position embeddings,
    ``layers`` pre-norm causal blocks, final LayerNorm, output tied to the token embedding.

    Args:
        vocab_size: V.
        config: :class:`TinyLMConfig`.
    """

    def __init__(self, vocab_size: int, config: TinyLMConfig) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.config = config
        self.tokens = nn.Embedding(vocab_size, config.dim)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, ids: Tensor) -> Tensor:
        """ids [B, T] (T <= max_len) -> next-token logits [B, T, V]; position j sees
        positions <= j only."""
        return self.project(self.hidden(ids))

    def hidden(self, ids: Tensor) -> Tensor:
        """ids [B, T] -> final hidden states [B, T, d] (before the tied output layer)."""
        t = ids.shape[1]
        if t > self.config.max_len:
            raise ValueError(f"sequence of {t} tokens > max_len {self.config.max_len}")
        x = self.tokens(ids) + self.positions(torch.arange(t, device=ids.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def project(self, hidden: Tensor) -> Tensor:
        """Hidden states [..., d] -> logits [..., V] (the tied output layer)."""
        return F.linear(hidden, self.tokens.weight)


def _adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decay on trainable matrices only (not biases and norms)."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


class TinyBackend(_CausalBackend):
    """:class:`GenerativeBackend` over :class:`TinyCausalLM` trained from scratch.

    The tokenizer is fitted at the first :meth:`fit` on ``corpus`` when given, else on the
    prompts and responses of the first epoch's examples; the model is then initialised from
    a seed drawn from the ``rng`` of :meth:`fit` (dropout and the rest of training draw
    from torch's global generator: seed it, e.g. :func:`facelib.seed.seed_everything`).
    A second :meth:`fit` continues with the same tokenizer and model.

    Args:
        levels, codebook_size: the index shape L x K (code tokens ``<a_0>`` ...).
        config: :class:`TinyLMConfig` (defaults: 2 layers, d 128, 4 heads).
        split: word-piece splitter ``str -> list[str]`` (``None``: MiniLM WordPiece).
        corpus: texts to fit the vocabulary on instead of the first epoch's examples.
        max_pieces: at most this many word pieces (most frequent first).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(self, levels: int, codebook_size: int, config: TinyLMConfig | None = None,
                 *, split: Split | None = None, corpus: Iterable[str] | None = None,
                 max_pieces: int = 10_000, device: str = "cpu") -> None:
        if levels < 1 or codebook_size < 1:
            raise ValueError(f"levels ({levels}) and codebook_size ({codebook_size}) must "
                             f"be >= 1")
        self.levels, self.codebook_size = levels, codebook_size
        self.config = config if config is not None else TinyLMConfig()
        c = self.config
        self.batch_size, self.max_len, self.clip, self.length_pool = (
            c.batch_size, c.max_len, c.clip, c.length_pool)
        self.device = resolve_device(device, "backend")
        self.split, self.max_pieces = split, max_pieces
        self.corpus = list(corpus) if corpus is not None else None
        self.tokenizer: TinyTokenizer | None = None
        self.model: TinyCausalLM | None = None
        self._about = (f"TinyCausalLM: {c.layers}-layer decoder-only transformer "
                       f"(d {c.dim}, {c.heads} heads) trained from scratch on the "
                       f"instruction examples; no pretrained language knowledge")
        self.description = self._about

    def _prepare(self, first: Sequence[Example], rng: np.random.Generator) -> None:
        if self.tokenizer is None:
            texts = self.corpus if self.corpus is not None else [
                text for e in first for text in (e.prompt, e.response)]
            self.tokenizer = TinyTokenizer.fit(texts, self.levels, self.codebook_size,
                                               self.split, self.max_pieces)
        if self.model is None:
            seed = int(rng.integers(2**31))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = TinyCausalLM(len(self.tokenizer), self.config).to(self.device)
        n = sum(p.numel() for p in self.model.parameters())
        self.description = (f"{self._about} ({n / 1e6:.2f}M parameters, vocabulary "
                            f"{len(self.tokenizer)})")

    def _fitted(self) -> tuple[TinyTokenizer, TinyCausalLM]:
        if self.tokenizer is None or self.model is None:
            raise RuntimeError("TinyBackend is not trained yet: call fit() first")
        return self.tokenizer, self.model

    def _module(self) -> nn.Module:
        return self._fitted()[1]

    def _encode_prompt(self, prompt: str) -> list[int]:
        return self._fitted()[0].encode_prompt(prompt)

    def _encode_response(self, response: str) -> list[int]:
        return self._fitted()[0].encode_response(response)

    def _pad_id(self) -> int:
        return self._fitted()[0].pad_id

    def _code_ids(self) -> Tensor:
        return torch.from_numpy(self._fitted()[0].code_ids())

    def _logits(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self._fitted()[1](ids)

    def _logits_at(self, ids: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        model = self._fitted()[1]  # the output layer on the selected positions only
        return model.project(model.hidden(ids)[positions])

    def _optimizer(self) -> torch.optim.Optimizer:
        return _adamw(self._module(), self.config.lr, self.config.weight_decay)

    def _run_params(self) -> dict[str, Any]:
        vocab = "\n".join(self._fitted()[0].vocab).encode()
        return {"backend": "tiny", "config": asdict(self.config), "levels": self.levels,
                "codebook_size": self.codebook_size,
                "vocabulary": hashlib.sha256(vocab).hexdigest()[:16]}


# --------------------------------------------------------------------- Hugging Face backend


class HFBackend(_CausalBackend):
    """:class:`GenerativeBackend` over a pretrained Hugging Face causal LM in a local folder
    (never downloaded).

    The ``L * K`` code tokens are added to the tokenizer (``add_tokens``) and the embeddings
    resized. Text between code tokens is tokenised by the model's tokenizer without special
    tokens; a prompt starts with the BOS token (EOS when there is none), a response ends
    with EOS (the SEP token, or a new ``<|eos|>``, when the tokenizer has no EOS); padding
    uses PAD, else EOS.

    Args:
        path: folder with the model and its tokenizer (``save_pretrained`` layout).
        levels, codebook_size: the index shape L x K.
        lr, weight_decay, batch_size, clip: AdamW (LC-Rec: 5e-5, 0.01), examples per step,
            gradient-norm clipping (0: off).
        max_len: longest sequence (default: the model's positions, at most 512).
        lora_r, lora_alpha, lora_dropout: LoRA on all linear layers when ``lora_r > 0``
            (needs ``peft``), input and output embeddings trained in full (LC-Rec's LoRA
            variant saves them); ``0``: full fine-tuning.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        bf16: forward and backward under bfloat16 autocast (weights stay float32, as the
            HF Trainer's ``--bf16``).
    """

    def __init__(self, path: str | Path, levels: int, codebook_size: int, *,
                 lr: float = 5e-5, weight_decay: float = 0.01, batch_size: int = 8,
                 clip: float = 1.0, max_len: int | None = None, lora_r: int = 0,
                 lora_alpha: float = 32.0, lora_dropout: float = 0.05, device: str = "cpu",
                 bf16: bool = False) -> None:
        if levels < 1 or codebook_size < 1:
            raise ValueError(f"levels ({levels}) and codebook_size ({codebook_size}) must "
                             f"be >= 1")
        if not lr > 0 or weight_decay < 0 or batch_size < 1 or clip < 0 or lora_r < 0:
            raise ValueError(f"HFBackend needs lr > 0, weight_decay >= 0, batch_size >= 1, "
                             f"clip >= 0, lora_r >= 0; got {lr}, {weight_decay}, "
                             f"{batch_size}, {clip}, {lora_r}")
        if lora_r and importlib.util.find_spec("peft") is None:
            raise ImportError(f"LoRA (lora_r={lora_r}) needs the peft package, which is not "
                              f"installed: pip install peft (or set lora_r=0)")
        self.device = resolve_device(device, "backend")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model at {path} (config.json missing); "
                                    f"save one there with save_pretrained")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path, self.levels, self.codebook_size = path, levels, codebook_size
        self.lr, self.weight_decay, self.batch_size, self.clip = lr, weight_decay, batch_size, clip
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.bf16 = bf16
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar: tqdm only on request
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                         dtype=torch.float32)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        tok = self.tokenizer
        if tok.eos_token_id is None:
            if tok.sep_token is not None:
                tok.eos_token = tok.sep_token
            else:
                tok.add_special_tokens({"eos_token": "<|eos|>"})
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.add_tokens(code_vocabulary(levels, codebook_size))
        model.resize_token_embeddings(len(tok))
        codes = tok.convert_tokens_to_ids(code_vocabulary(levels, codebook_size))
        if tok.unk_token_id is not None and tok.unk_token_id in codes:
            raise ValueError(f"the tokenizer at {path} did not take the code tokens")
        self._codes = torch.tensor(codes, dtype=torch.long).view(levels, codebook_size)
        self._code_index = dict(zip(code_vocabulary(levels, codebook_size), codes))
        self._start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        positions = (getattr(model.config, "max_position_embeddings", None)
                     or getattr(model.config, "n_positions", None) or 512)
        self.max_len = int(max_len if max_len is not None else min(positions, 512))
        if self.max_len < levels + 2:
            raise ValueError(f"max_len={self.max_len} is too short for {levels} codes")
        n = sum(p.numel() for p in model.parameters())
        if lora_r:
            from peft import LoraConfig, get_peft_model

            embeddings = {model.get_input_embeddings(), model.get_output_embeddings()}
            names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                            if m in embeddings})
            model = get_peft_model(model, LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                target_modules="all-linear", modules_to_save=names, task_type="CAUSAL_LM"))
        self.model = model.to(self.device)
        tuning = f"LoRA r={lora_r}, alpha={lora_alpha}" if lora_r else "full fine-tuning"
        self.description = (f"HFCausalLM: pretrained {model.config.model_type} from {path} "
                            f"({n / 1e6:.1f}M parameters), {tuning}, "
                            f"{levels}x{codebook_size} code tokens added"
                            f"{', bf16 autocast' if bf16 else ''}")

    def _ids(self, text: str) -> list[int]:
        out: list[int] = []
        for _, part in _segments(text):
            if part in self._code_index:  # a code of another index shape is plain text
                out.append(int(self._code_index[part]))
            else:
                out.extend(self.tokenizer.encode(part, add_special_tokens=False))
        return out

    def _module(self) -> nn.Module:
        return self.model

    def _encode_prompt(self, prompt: str) -> list[int]:
        return [self._start, *self._ids(prompt)]

    def _encode_response(self, response: str) -> list[int]:
        return [*self._ids(response), self.tokenizer.eos_token_id]

    def _pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def _code_ids(self) -> Tensor:
        return self._codes

    def _logits(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.model(input_ids=ids, attention_mask=mask).logits

    def _optimizer(self) -> torch.optim.Optimizer:
        return _adamw(self.model, self.lr, self.weight_decay)

    def _run_params(self) -> dict[str, Any]:
        return {"backend": "hf", "path": str(self.path), "levels": self.levels,
                "codebook_size": self.codebook_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "max_len": self.max_len, "lora_r": self.lora_r, "bf16": self.bf16}


def load_backend(kind: str, **kwargs: Any) -> GenerativeBackend:
    """The backend named ``kind`` (one of :data:`BACKENDS`) built with ``kwargs``:
    ``"tiny"`` -> :class:`TinyBackend`, ``"hf"`` -> :class:`HFBackend`."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown generative backend {kind!r}; choose one of "
                         f"{', '.join(BACKENDS)}")
    return {"tiny": TinyBackend, "hf": HFBackend}[kind](**kwargs)

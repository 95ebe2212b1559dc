"""Descriptor prompts in the frozen encoder's input-embedding space (paper section 3e).

Each entity's C chosen words become one input sequence, built from embeddings, not text::

    [CLS] + P_type + [w_1, ",", w_2, ",", ..., ",", w_C] + [SEP]       L = 1 + |P| + 2C - 1 + 1

    P_user = "The user and his likes can be described as the following words:"
    P_item = "The {noun} attracts those who can be described as the following words:"

The prompt texts are tokenized once (no special tokens) and their embeddings cached. The
reference tokenized [P_user, P_item, P_item] together without padding, so both prompts had
to have the same number of tokens (quirk 9.9); here a shorter prompt is right-padded after
its [SEP] and the attention mask marks the padding, so any noun works. MiniLM: both
prompts are 13 WordPiece tokens with noun "movie", so L = 46 for C = 16 and no padding.

Word inputs w_c (:func:`word_inputs`):

- default (exact, straight-through): ``w = E_vocab[k] + (w_pinv - sg(w_pinv))`` with
  ``w_pinv = (z_q_st - a) pinv(A)^T`` (A, a detached). The forward value is exactly the
  chosen word's token embedding; the backward is the reference's: ``dL/dz_e =
  dL/dw pinv(A)`` through the straight-through z_q_st. No gradient reaches the codebook
  mapping or E_vocab.
- ``pinv_words`` (reference, quirk 9.4): ``w = w_pinv``, the token embedding projected onto
  rowspace(A) (lossy: the encoder never sees the real word).

Prompt-to-entity assignment for the block-ordered batch X = [users; pos; neg] (3B rows):
the default gives the B users the user prompt and the 2B items the item prompt; the
reference (``reference_prompt_order``, quirk 9.2) repeats [P_user, P_item, P_item] B times,
so 2/3 of the users get the item prompt and 1/3 of the items the user prompt.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from facelib.systems.face.model.quantizer import TokenQuantizer

USER_PROMPT = "The user and his likes can be described as the following words:"
ITEM_PROMPT = "The {noun} attracts those who can be described as the following words:"
USER, ITEM = 0, 1  # entity kinds: index into the prompt templates


def entity_kinds(batch_size: int, reference_order: bool = False, device: Any = None) -> Tensor:
    """Prompt kind (USER/ITEM) of each row of the block-ordered batch [users; pos; neg].

    Returns a long tensor [3B]: default ``[USER]*B + [ITEM]*2B``; with ``reference_order``
    the reference's ``[USER, ITEM, ITEM]`` repeated B times.
    """
    if reference_order:
        return torch.tensor([USER, ITEM, ITEM], device=device).repeat(batch_size)
    kinds = torch.full((3 * batch_size,), ITEM, dtype=torch.long, device=device)
    kinds[:batch_size] = USER
    return kinds


def word_inputs(quantizer: TokenQuantizer, z_q_st: Tensor, indices: Tensor, pinv: bool) -> Tensor:
    """Token-space word inputs: z_q_st [N, C, D], indices [N, C] -> w [N, C, d_t].

    ``pinv`` gives the reference's lossy ``w_pinv``; otherwise the exact token embeddings
    with the same straight-through gradient (module docstring).
    """
    w_pinv = quantizer.pinv_words(z_q_st)
    if pinv:
        return w_pinv
    return quantizer.codebook_tokens[indices] + (w_pinv - w_pinv.detach())


class PromptBuilder(nn.Module):
    """Assemble prompt sequences around C word embeddings; all tables are cached buffers.

    Args:
        tokenizer: a Hugging Face tokenizer (called as ``tokenizer(text,
            add_special_tokens=False)["input_ids"]``).
        token_embeddings: the encoder's input-embedding matrix [V_tok, d_t] (read, copied).
        cls_id, sep_id: ids of the special prefix and suffix tokens.
        word_num: C.
        noun: the item noun of P_item ("movie" for MovieLens; "book", "restaurant", "game"
            for the RLMRec datasets).

    Buffers (non-persistent): ``templates`` [2, L, d_t] (row USER, row ITEM) with zeros at
    the word slots and padding, ``masks`` [2, L] long, ``slots`` [2, C] long (the positions
    of w_1..w_C). ``lengths`` = (L_user, L_item), each ``1 + |P| + 2C - 1 + 1``;
    L = max(lengths).
    """

    templates: Tensor
    masks: Tensor
    slots: Tensor

    def __init__(
        self,
        tokenizer: Any,
        token_embeddings: Tensor,
        cls_id: int,
        sep_id: int,
        word_num: int,
        noun: str = "movie",
    ):
        super().__init__()

        def ids(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        comma = ids(",")
        if len(comma) != 1:
            raise ValueError(
                f"',' tokenizes to {len(comma)} tokens {comma}, but the word separator must "
                "be one token: use an encoder whose tokenizer has a single comma token"
            )
        prompts = [ids(USER_PROMPT), ids(ITEM_PROMPT.format(noun=noun))]
        table = token_embeddings.detach().float().cpu()  # buffers start on the CPU; .to() moves them
        self.word_num = word_num
        self.lengths = tuple(1 + len(p) + 2 * word_num - 1 + 1 for p in prompts)
        length = max(self.lengths)
        templates = torch.zeros(2, length, table.shape[1])
        masks = torch.zeros(2, length, dtype=torch.long)
        slots = torch.zeros(2, word_num, dtype=torch.long)
        for kind, prompt in enumerate(prompts):
            start = 1 + len(prompt)  # position of w_1
            seq = [cls_id, *prompt]
            templates[kind, : len(seq)] = table[seq]
            slots[kind] = start + 2 * torch.arange(word_num)
            templates[kind, slots[kind][:-1] + 1] = table[comma[0]]
            templates[kind, self.lengths[kind] - 1] = table[sep_id]
            masks[kind, : self.lengths[kind]] = 1
        self.register_buffer("templates", templates, persistent=False)
        self.register_buffer("masks", masks, persistent=False)
        self.register_buffer("slots", slots, persistent=False)

    @classmethod
    def from_encoder(cls, encoder: Any, word_num: int, noun: str = "movie") -> PromptBuilder:
        """Build from a FrozenEncoder-like object (tokenizer, token_embeddings, cls/sep ids)."""
        return cls(
            encoder.tokenizer, encoder.token_embeddings, encoder.cls_id, encoder.sep_id,
            word_num, noun,
        )

    def forward(self, words: Tensor, kinds: Tensor) -> tuple[Tensor, Tensor]:
        """words [N, C, d_t], kinds [N] (USER/ITEM) -> (inputs_embeds [N, L, d_t], mask [N, L]).

        Differentiable in ``words``: the words are scattered in place into one gathered
        copy of the cached templates (the templates themselves are never written).
        """
        if words.shape[1] != self.word_num:
            raise ValueError(
                f"got {words.shape[1]} words per entity, the prompt was built for "
                f"C={self.word_num}: build the PromptBuilder with the same word_num"
            )
        slots = self.slots[kinds].unsqueeze(-1).expand(-1, -1, words.shape[-1])  # [N, C, d_t]
        embeds = self.templates[kinds]  # a fresh [N, L, d_t] copy, no gradient of its own
        embeds.scatter_(1, slots, words.to(embeds.dtype))
        return embeds, self.masks[kinds]

"""Item indices as text, and the instruction examples the language-model backends learn.

An item's index is a short sequence of discrete codes, one per quantiser level; LC-Rec
writes level ``l``'s code ``k`` as one new token ``<x_k>`` with ``x`` the level's letter
(``<a_3><b_17><c_2><d_9>``). Prompts and responses are plain strings in which such tokens
may appear; backends split them out before tokenising the words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL_LETTERS = "abcdefgh"  # one letter per quantiser level (at most 8 levels)
CODE_PATTERN = re.compile(r"<([a-h])_(\d+)>")


def code_token(level: int, code: int) -> str:
    """The token of ``code`` at quantiser ``level`` (0-based): ``code_token(1, 17) ==
    "<b_17>"``."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level {level} out of range: at most {len(LEVEL_LETTERS)} levels")
    if code < 0:
        raise ValueError(f"code {code} must be >= 0")
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def code_vocabulary(levels: int, codebook_size: int) -> list[str]:
    """Every code token, level by level: ``levels * codebook_size`` strings."""
    return [code_token(level, k) for level in range(levels) for k in range(codebook_size)]


def index_string(codes: Sequence[int] | np.ndarray) -> str:
    """An item's index [L] as text: ``index_string([3, 17]) == "<a_3><b_17>"``."""
    return "".join(code_token(level, int(c)) for level, c in enumerate(codes))


def parse_index(text: str) -> tuple[int, ...]:
    """The codes of the index written in ``text`` (levels in order); ValueError when the
    tokens are not ``<a_…><b_…>…`` from the first level on."""
    found = CODE_PATTERN.findall(text)
    letters = "".join(letter for letter, _ in found)
    if not found or letters != LEVEL_LETTERS[:len(found)]:
        raise ValueError(f"{text!r} is not an item index like '<a_3><b_17>'")
    return tuple(int(code) for _, code in found)


@dataclass(frozen=True)
class Example:
    """One instruction example: the backend is trained on ``response`` given ``prompt``
    (the loss is on the response tokens only).

    Attributes:
        task: the task family that built it (``"seq"``, ``"mut"``, ...).
        prompt: the instruction and its input, e.g. a history of item indices.
        response: the text to generate, e.g. the next item's index.
    """

    task: str
    prompt: str
    response: str

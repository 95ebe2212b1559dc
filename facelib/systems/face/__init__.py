"""FACE: collaborative-filtering embeddings -> C distinct words of a frozen LLM vocabulary.

Modules, one paper concept each: ``projection`` (disentangled projection, concept
transformers, reconstruction head), ``quantizer`` (greedy distinct token quantization),
``prompt`` (descriptor prompts in token-embedding space), ``alignment`` (contrastive
alignment through the frozen text encoder), ``module`` (:class:`FACE`, :class:`FACEConfig`).
"""

from facelib.systems.face.alignment import TextEncoder, info_nce
from facelib.systems.face.module import FACE, REFERENCE_SWITCHES, FACEConfig, FACEForward
from facelib.systems.face.projection import ConceptProjection, ReconstructionHead, concept_layers
from facelib.systems.face.prompt import (
    ITEM,
    ITEM_PROMPT,
    USER,
    USER_PROMPT,
    PromptBuilder,
    entity_kinds,
    word_inputs,
)
from facelib.systems.face.quantizer import Quantized, TokenQuantizer, greedy_assign

__all__ = [
    "FACE",
    "FACEConfig",
    "FACEForward",
    "REFERENCE_SWITCHES",
    "ConceptProjection",
    "ReconstructionHead",
    "concept_layers",
    "TokenQuantizer",
    "Quantized",
    "greedy_assign",
    "PromptBuilder",
    "entity_kinds",
    "word_inputs",
    "USER",
    "ITEM",
    "USER_PROMPT",
    "ITEM_PROMPT",
    "TextEncoder",
    "info_nce",
]

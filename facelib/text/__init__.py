"""Text side of FACE (offline): profiles, the frozen MiniLM encoder, the descriptor
vocabulary and its token-embedding codebook.

Importing this package loads no model and reads no file; the encoder loads on
:meth:`FrozenEncoder.load`.
"""

from facelib.text.encoder import FrozenEncoder, TextError
from facelib.text.profiles import (
    GeneratedProfileBuilder,
    GivenProfileBuilder,
    ProfileBuilder,
    Profiles,
    TemplateProfileBuilder,
    select_builder,
)
from facelib.text.stage import TextArtifacts, TextParams, load_text_artifacts, run_text_stage
from facelib.text.vocabulary import build_vocabulary, codebook

__all__ = [
    "FrozenEncoder", "GeneratedProfileBuilder", "GivenProfileBuilder", "ProfileBuilder",
    "Profiles", "TemplateProfileBuilder", "TextArtifacts", "TextError", "TextParams",
    "build_vocabulary", "codebook", "load_text_artifacts", "run_text_stage", "select_builder",
]

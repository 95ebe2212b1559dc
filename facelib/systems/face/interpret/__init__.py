"""Interpretability studies of FACE's descriptors (the ``interpret`` stage).

Each study compares four descriptor variants: FACE after align, the map stage alone,
random vocabulary words, and the nearest words to the entity's profile (a reference):

=================  =====================================================================
``retrieval``      descriptor sentence -> own profile among all profiles (hit@k, MRR)
``keywords``       descriptors that are profile words (lemma match) or near synonyms
``genres``         zero-shot genre ranking of item descriptor sentences vs true genres
``usage``          codebook usage (distinct words, entropy, per-concept diversity) and
                   stability across seeds (Jaccard)
``cases``          case-study tables and a t-SNE map of item embeddings
``items``          item retrieval (a judge picks the true item among N candidates from
                   its descriptors; default judge: the frozen encoder, not an LLM) and
                   item generation (FACE's decoder ranks the true item among all items)
``explorer``       one self-contained HTML page with every user's and item's descriptors
=================  =====================================================================

``stage.run_interpret`` runs them all; ``summary.verdicts`` turns the numbers into
sentences. Importing this package loads no model and reads no file.
"""

from facelib.systems.face.interpret.items import EncoderJudge, ItemJudge
from facelib.systems.face.interpret.params import InterpretError, InterpretParams
from facelib.systems.face.interpret.stage import InterpretResult, prepare_smoke_descriptors, run_interpret
from facelib.systems.face.interpret.summary import study_table, verdicts

__all__ = ["EncoderJudge", "InterpretError", "InterpretParams", "InterpretResult", "ItemJudge",
           "prepare_smoke_descriptors", "run_interpret", "study_table", "verdicts"]

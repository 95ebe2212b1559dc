"""FACE: collaborative-filtering embeddings -> C distinct words of a frozen LLM vocabulary.

What the face stage trains (``model/``, one paper concept per module): ``projection``
(disentangled projection, concept transformers, reconstruction head), ``quantizer``
(greedy distinct token quantization), ``prompt`` (descriptor prompts in token-embedding
space), ``alignment`` (contrastive alignment through the frozen text encoder), ``entities``
(held-out entities, batches of distinct entities), ``module`` (:class:`FACE`,
:class:`FACEConfig`). Beside it: ``params`` and ``stage`` (the ``face`` stage), ``rows``
(its rows of the results table), ``interpret`` (the descriptor studies) and ``ablations``.

Every regulariser system's folder follows this layout (``model/``, ``params.py``,
``stage.py``, ``rows.py``), which is what the ``regularize`` stage of ``dvc.yaml`` depends
on; studies of a system's outputs sit beside them and do not re-run its training.

The package imports nothing itself: import from the module that defines a name
(``from facelib.systems.face.model.module import FACE``), so that a stage depends only on
the modules it runs.
"""

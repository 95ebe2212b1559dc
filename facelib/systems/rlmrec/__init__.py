"""RLMRec (Ren et al., WWW 2024): profile embeddings as a mutual-information regulariser.

What the rlmrec stage trains (``model/``, one paper concept per module): ``infonce`` (the
InfoNCE bound of Eqs. 16-18 with cosine similarity), ``mlp`` (the maps σ↓ and σ↑ between
the profile space and the CF space), ``contrastive`` (:class:`RLMRecCon`: CF embeddings
against projected profiles) and ``generative`` (:class:`RLMRecGen`: masked nodes
reconstruct their profiles). Beside it: ``params`` and ``stage`` (the ``rlmrec`` stage:
each variant trains the backbone *with* its regulariser from scratch) and ``rows`` (its
rows of the results table).

The package imports nothing itself: import from the module that defines a name
(``from facelib.systems.rlmrec.model.contrastive import RLMRecCon``).
"""

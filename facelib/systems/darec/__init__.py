"""DaRec (Yang et al., ICDE 2025): disentangled alignment of CF and profile embeddings,
**reconstructed** from its abstract and reviews (no public code; the exact formulas were
not available). Every reconstructed part is a switch of ``params.yaml`` section ``darec``,
so that verified formulas can replace it.

What the darec stage trains (``model/``): ``structure`` (the reconstructed losses:
orthogonality and uniformity of the disentangled parts, the global structure alignment of
batch similarity matrices, the local alignment of matched preference clusters) and
``darec`` (:class:`DaRec`, the regulariser with its shared and specific projections).
Beside it: ``params``, ``stage`` (trained jointly with the backbone from scratch, as
RLMRec: :mod:`facelib.systems.joint`) and ``rows`` (its row of the related table).

The package imports nothing itself: import from the module that defines a name.
"""

"""Generative recommenders (LC-Rec, Semantic Convergence) and their protocol.

LC-Rec evaluates on chronological leave-one-out (:mod:`facelib.generative.leave_one_out`),
not on the study's 3:1:1 split; this package keeps that protocol apart from the study's
modules, so that the study's runs do not depend on it.
"""

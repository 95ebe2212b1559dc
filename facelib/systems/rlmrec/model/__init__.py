"""What the rlmrec stage trains: ``infonce``, ``mlp``, ``contrastive`` (RLMRec-Con),
``generative`` (RLMRec-Gen). Import from the defining module."""

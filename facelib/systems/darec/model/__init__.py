"""DaRec's regulariser (``darec``) and its reconstructed losses (``structure``)."""

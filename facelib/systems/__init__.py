"""The systems read beside each other: one folder per system (``face/`` so far)."""

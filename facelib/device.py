"""The one place that turns a ``device`` parameter into a torch device."""

from __future__ import annotations

import torch

from facelib.config import DEVICES, ParamsError


def resolve_device(name: str, section: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a torch device.

    ``section`` names the params section in the error, e.g. ``"text"``: asking for CUDA
    without a GPU, or an unknown name, raises a one-line :class:`ParamsError`.
    """
    if name not in DEVICES:
        raise ParamsError(f"params [{section}.device]: unknown device {name!r}; choose one "
                          f"of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"params [{section}.device]: cuda was asked for but torch sees no "
                          f"CUDA GPU; set {section}.device to cpu or auto")
    return torch.device(name)

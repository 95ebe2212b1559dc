"""Compute profiles (profiles/<name>.yaml): the merged params are written and validated."""

from __future__ import annotations

import pytest
import yaml

from facelib.config import ParamsError, read_params_file
from facelib.profiles import apply, merged


def test_ml1m_profile_applies_its_keys_and_validates(tmp_path):
    out = apply("ml-1m", tmp_path / "params.yaml")
    written = yaml.safe_load(out.read_text())
    assert written["data"]["dataset"] == "ml-1m"
    assert written["study"]["seeds"] == [0]
    assert written["face"] == read_params_file()["face"]  # untouched sections stay


def test_unknown_profile_is_a_one_line_error():
    with pytest.raises(ParamsError, match="no profile 'nope'"):
        merged("nope")

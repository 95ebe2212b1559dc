"""Parameter validation: wrong types and ranges fail with one-line messages."""

import pytest

from facelib.config import ParamsError, build, read_params_file
from facelib.data import DataParams
from facelib.pipeline import STAGES, params_class, stage_params


def test_defaults_validate():
    p = build(DataParams, {}, "data")
    assert p.dataset == "ml-100k" and p.min_rating == 4.0


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"dataset": "netflix"}, "unknown value 'netflix'"),
        ({"min_rating": "four"}, "expected float"),
        ({"min_rating": 7}, "must be <= 5.0"),
        ({"seed": -1}, "must be >= 0"),
        ({"seed": 1.5}, "expected int"),
        ({"seed": True}, "expected int"),
        ({"ratios": [3, 1]}, "three numbers"),
        ({"colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_bad_values_raise_one_line_errors(values, fragment):
    with pytest.raises(ParamsError) as err:
        build(DataParams, values, "data")
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_int_is_accepted_for_float_and_converted():
    assert build(DataParams, {"min_rating": 3}, "data").min_rating == 3.0


def test_params_yaml_sections_all_validate():
    params = read_params_file()
    for stage in STAGES:
        if stage in params:
            stage_params(stage)


def test_unknown_stage_is_a_clear_error():
    with pytest.raises(ParamsError, match="unknown stage 'nope'"):
        params_class("nope")


def test_invalid_yaml_is_reported(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_params_file(bad)

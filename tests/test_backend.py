"""Language-model backends: response-only loss, causality, tokenizer, learning a mapping,
constrained scoring, determinism, resume, the Hugging Face backend on a tiny local GPT-2."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from facelib.generative.backend import (
    BACKENDS,
    IGNORE,
    SPECIALS,
    GenerativeBackend,
    HFBackend,
    TinyBackend,
    TinyCausalLM,
    TinyLMConfig,
    TinyTokenizer,
    collate,
    load_backend,
    response_loss,
)
from facelib.generative.beam import IndexTrie
from facelib.generative.codes import Example, index_string
from facelib.generative.fit import StopRule, fit_early_stopping
from facelib.seed import seed_everything

LEVELS, K, ITEMS = 2, 5, 20
SMALL = TinyLMConfig(layers=2, dim=64, heads=4, dropout=0.0, lr=3e-3, batch_size=10,
                     max_len=16)


def _mapping() -> tuple[np.ndarray, list[int], list[Example]]:
    """20 items with distinct 2-level indices; item i's prompt asks for item target[i]."""
    pairs = np.array([(a, b) for a in range(K) for b in range(K)])
    indices = pairs[np.random.default_rng(0).permutation(len(pairs))[:ITEMS]]
    target = [(i * 7 + 3) % ITEMS for i in range(ITEMS)]
    examples = [Example("seq", f"item {index_string(indices[i])}",
                        index_string(indices[target[i]])) for i in range(ITEMS)]
    return indices, target, examples


def _no_eval() -> dict[str, float]:
    return {"score": 0.0}


@pytest.fixture(scope="module")
def learned():
    """A tiny backend trained on the mapping (40 epochs, about a second)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    indices, target, examples = _mapping()
    trie = IndexTrie(indices)
    backend = TinyBackend(LEVELS, K, SMALL, split=str.split)

    def accuracy() -> dict[str, float]:
        top = backend.generate_items([e.prompt for e in examples], trie, beam=3)
        return {"acc": float(np.mean([row[0][0] == t for row, t in zip(top, target)]))}

    try:
        log = backend.fit(lambda epoch: examples, accuracy,
                          StopRule(max_epochs=40, eval_every=20, select="acc"),
                          seed_everything(0))
    finally:
        torch.set_num_threads(before)
    return backend, log, indices, target, examples, trie


# ------------------------------------------------------------------ loss and model


def test_collate_masks_prompt_and_padding_and_left_truncates_the_prompt():
    ids, labels, mask = collate([([1, 7, 8, 4], [10, 11, 2]), ([1, 9, 4], [12, 2])], 0, 16)
    assert ids.tolist() == [[1, 7, 8, 4, 10, 11, 2], [1, 9, 4, 12, 2, 0, 0]]
    assert labels.tolist() == [[IGNORE] * 4 + [10, 11, 2], [IGNORE] * 3 + [12, 2] + [IGNORE] * 2]
    assert mask.tolist() == [[1] * 7, [1] * 5 + [0] * 2]
    ids, labels, _ = collate([([1, 7, 8, 4], [10, 11, 2])], 0, 5)  # keeps the response
    assert ids.tolist() == [[8, 4, 10, 11, 2]] and labels.tolist()[0][2:] == [10, 11, 2]
    with pytest.raises(ValueError, match="max_len"):
        collate([([1], [3, 4, 5])], 0, 3)


def test_loss_is_on_response_tokens_only():
    pairs = [([1, 7, 8, 4], [10, 11, 2]), ([1, 9, 4], [12, 2])]
    ids, labels, _ = collate(pairs, 0, 16)
    logits = torch.randn(*ids.shape, 13, generator=torch.Generator().manual_seed(0))
    base = response_loss(logits, labels)
    # other prompt tokens (the targets of the prompt positions): same labels, same loss
    _, other_labels, _ = collate([([1, 3, 3, 5], [10, 11, 2]), ([1, 6, 5], [12, 2])], 0, 16)
    assert torch.equal(other_labels, labels)
    assert response_loss(logits, other_labels) == base
    # logits that predict prompt tokens or padding do not count
    ignored = labels[:, 1:] == IGNORE  # [B, T-1], position j predicts token j + 1
    noisy = logits.clone()
    noisy[:, :-1][ignored] += 5 * torch.randn(int(ignored.sum()), 13)
    assert torch.allclose(response_loss(noisy, labels), base)
    # a different response changes the loss, and so do the logits that predict it
    _, changed, _ = collate([([1, 7, 8, 4], [10, 5, 2]), ([1, 9, 4], [12, 2])], 0, 16)
    assert not torch.isclose(response_loss(logits, changed), base)
    noisy = logits.clone()
    noisy[:, :-1][~ignored] += 5 * torch.randn(int((~ignored).sum()), 13)
    assert not torch.isclose(response_loss(noisy, labels), base)
    # the mean over response tokens: 5 of them
    manual = -sum(torch.log_softmax(logits[b, j - 1], -1)[labels[b, j]]
                  for b in range(2) for j in range(1, ids.shape[1]) if labels[b, j] != IGNORE)
    assert torch.isclose(base, manual / 5)


def test_tiny_model_is_causal_with_tied_embeddings(one_thread):
    torch.manual_seed(0)
    model = TinyCausalLM(30, TinyLMConfig(dim=32, heads=4, max_len=12)).eval()
    ids = torch.randint(0, 30, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 30)
    changed = ids.clone()
    changed[:, 6] = (ids[:, 6] + 1) % 30
    after = model(changed)
    assert torch.allclose(after[:, :6], logits[:, :6], atol=1e-6)
    assert not torch.allclose(after[:, 6:], logits[:, 6:], atol=1e-4)
    with torch.no_grad():
        model.tokens.weight[3] += 1.0  # the output layer is the token embedding
    assert not torch.allclose(model(ids)[..., 3], logits[..., 3])
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_config_is_validated():
    with pytest.raises(ValueError, match="divisible by heads"):
        TinyLMConfig(dim=130, heads=4)
    with pytest.raises(ValueError, match="dropout"):
        TinyLMConfig(dropout=1.0)


# ------------------------------------------------------------------------- tokenizer


def test_tokenizer_code_tokens_are_single_ids_and_unseen_words_unk():
    tok = TinyTokenizer.fit(["item <a_1><b_2> red guitar", "red <a_0>"], 2, 3, split=str.split)
    assert len(tok) == len(SPECIALS) + 2 * 3 + 3  # specials, codes, {red, item, guitar}
    assert tok.vocab[len(SPECIALS) + 2 * 3] == "red"  # most frequent piece first
    codes = tok.ids("<a_1><b_2>")
    assert codes == [tok.code_ids()[0, 1], tok.code_ids()[1, 2]]
    assert [tok.vocab[i] for i in codes] == ["<a_1>", "<b_2>"]
    assert tok.ids("green guitar <c_0> <a_9> <eos>") == [tok.unk_id, tok.index["guitar"],
                                                         tok.unk_id, tok.unk_id, tok.unk_id]
    prompt, response = tok.encode(Example("seq", "item <a_1><b_2>", "<a_0><b_1>"))
    assert prompt[0] == tok.bos_id and prompt[-1] == tok.sep_id
    assert response == [*tok.code_ids()[[0, 1], [0, 1]], tok.eos_id]
    assert tok.decode(prompt) == "item <a_1><b_2>"
    assert tok.decode(response) == "<a_0><b_1>"


def test_tokenizer_default_splits_with_minilm_word_pieces():
    tok = TinyTokenizer.fit(["Guitar strings <a_0>"], 1, 2)
    assert tok.vocab[len(SPECIALS) + 2:] == ["guitar", "strings"]
    assert tok.ids("guitar violin <a_1>") == [tok.index["guitar"], tok.unk_id,
                                              tok.code_ids()[0, 1]]


# ---------------------------------------------------------------------- tiny backend


def test_tiny_backend_learns_a_mapping_and_generates_legal_items(learned, one_thread):
    backend, log, indices, target, examples, trie = learned
    assert "no pretrained language knowledge" in backend.description
    assert isinstance(backend, GenerativeBackend)
    assert log.history[-1]["loss"] < 0.3 * log.history[0]["loss"]
    top = backend.generate_items([e.prompt for e in examples], trie, beam=4)
    assert all(len(row) == 4 and len({i for i, _ in row}) == 4 for row in top)
    assert all(0 <= i < ITEMS for row in top for i, _ in row)
    assert all(row[0][1] >= row[-1][1] for row in top)
    hits = np.mean([row[0][0] == t for row, t in zip(top, target)])
    assert hits >= 0.8
    right = backend.sequence_logprob(examples[0].prompt, index_string(indices[target[0]]))
    wrong = backend.sequence_logprob(examples[0].prompt, index_string(indices[target[1]]))
    assert right <= 0 and right > wrong


def test_training_loss_is_the_response_loss_of_the_full_logits(learned, one_thread):
    """The training step applies the output layer at the response positions only; its
    loss equals :func:`response_loss` over the full logits."""
    from facelib.generative.backend import collate, response_loss

    backend, _, _, _, examples, _ = learned
    ids, labels, mask = collate([backend._encode(e) for e in examples[:6]],
                                backend._pad_id(), backend.max_len)
    backend.model.eval()
    with torch.no_grad():
        fast = backend._response_loss(ids, mask, labels)
        full = response_loss(backend._logits(ids, mask), labels)
    assert float(fast) == pytest.approx(float(full), rel=1e-5)


def test_validation_nll_is_the_mean_over_response_tokens_of_each_examples_logprob(
        learned, one_thread):
    """mean_response_nll pools the examples' response tokens (end of sequence included):
    its value times their count is minus the sum of sequence_logprob, batch size aside."""
    backend, _, _, _, examples, _ = learned
    chosen = examples[:7]  # batches of 10 and of fewer rows give the same value
    tokens = sum(int((collate([backend._encode(e)], backend._pad_id(), backend.max_len)[1]
                      [:, 1:] != IGNORE).sum()) for e in chosen)
    want = -sum(backend.sequence_logprob(e.prompt, e.response) for e in chosen) / tokens
    assert backend.mean_response_nll(chosen) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="no example"):
        backend.mean_response_nll([])


def test_stop_rule_rel_delta_stops_a_loss_that_only_creeps_down():
    """With rel_delta 0.01, falls of 0.2% are no gain: the run stops three checks after
    0.5; without it, every fall counts and the run reaches its cap."""
    module = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=0.0)

    def run(rule):
        values = iter([1.0, 0.5, 0.499, 0.498, 0.497, 0.3, 0.29])
        return fit_early_stopping(module, opt, lambda epoch: {"loss": 0.0},
                                  lambda: {"loss": next(values)}, rule,
                                  np.random.default_rng(0))

    creeping = run(StopRule(max_epochs=7, patience=3, select="-loss", rel_delta=0.01))
    assert (creeping.stopped_by, creeping.best_epoch, creeping.epoch) == ("early_stopping", 2, 5)
    strict = run(StopRule(max_epochs=7, patience=3, select="-loss"))
    assert (strict.stopped_by, strict.best_epoch) == ("cap", 7)
    with pytest.raises(ValueError, match="rel_delta"):
        StopRule(max_epochs=1, rel_delta=-0.1)


def test_code_scorer_gives_log_probabilities_of_that_levels_codes(learned, one_thread):
    backend, _, indices, target, examples, _ = learned
    scores = backend.code_scorer(examples[0].prompt, LEVELS)
    first = scores(np.zeros((1, 0), dtype=np.int64))
    rows = scores(np.array([[0], [1], [4]]))
    assert first.shape == (1, K) and rows.shape == (3, K)
    assert (rows <= 0).all() and (np.exp(rows).sum(1) <= 1 + 1e-6).all()
    assert first[0].argmax() == indices[target[0]][0]  # learned first code
    # the full-vocabulary log-softmax after prompt + prefix, gathered at level 1's codes
    tok, model = backend.tokenizer, backend.model
    codes = tok.code_ids()
    for row, prefix in zip(rows, (0, 1, 4)):
        ids = torch.tensor([tok.encode_prompt(examples[0].prompt) + [int(codes[0, prefix])]])
        with torch.no_grad():
            logp = torch.log_softmax(model.eval()(ids)[0, -1], -1)
        np.testing.assert_allclose(row, logp[codes[1]].numpy(), atol=1e-5)
        assert not np.allclose(row, logp[codes[0]].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="levels"):
        scores(np.zeros((1, 2), dtype=np.int64))


def _short_run(seed: int, **fit_kwargs) -> tuple[list[float], TinyBackend]:
    _, _, examples = _mapping()
    backend = TinyBackend(LEVELS, K, TinyLMConfig(dim=32, heads=4, dropout=0.1, batch_size=8,
                                                  max_len=16), split=str.split)
    log = backend.fit(fit_kwargs.pop("examples", lambda epoch: examples), _no_eval,
                      StopRule(max_epochs=4, select="score", patience=10),
                      seed_everything(seed), **fit_kwargs)
    return [row["loss"] for row in log.history], backend


def test_same_seed_same_losses(one_thread):
    first, _ = _short_run(0)
    again, _ = _short_run(0)
    other, _ = _short_run(1)
    assert first == again
    assert first != other


def test_interrupted_tiny_run_resumes_to_the_same_losses(one_thread, tmp_path):
    full, backend = _short_run(0)
    _, _, examples = _mapping()

    def crash_at_3(epoch: int) -> list[Example]:
        if epoch == 3:
            raise KeyboardInterrupt
        return examples

    path = tmp_path / "tiny.pt"
    with pytest.raises(KeyboardInterrupt):
        _short_run(0, examples=crash_at_3, checkpoint_path=path)
    resumed, again = _short_run(0, checkpoint_path=path, resume=True)
    assert resumed == full
    for a, b in zip(backend.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


# --------------------------------------------------------------- Hugging Face backend


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A 1-layer random GPT-2 saved with the (offline) MiniLM tokenizer next to it."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from facelib.text.encoder import model_path

    path = tmp_path_factory.mktemp("gpt2")
    tokenizer = AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=64,
                                       vocab_size=len(tokenizer)))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, len(tokenizer)


def test_hf_backend_trains_one_epoch_and_generates_legal_items(tiny_gpt2, one_thread):
    path, base_vocab = tiny_gpt2
    indices, _, examples = _mapping()
    backend = load_backend("hf", path=path, levels=LEVELS, codebook_size=K, lr=1e-3,
                           batch_size=10, max_len=32)
    assert isinstance(backend, HFBackend) and "pretrained gpt2" in backend.description
    assert len(backend.tokenizer) == base_vocab + LEVELS * K
    assert backend.model.get_input_embeddings().weight.shape[0] == base_vocab + LEVELS * K
    assert len(backend._ids("<a_1><b_2>")) == 2  # one id per code token
    log = backend.fit(lambda epoch: examples, _no_eval, StopRule(max_epochs=1, select="score"),
                      seed_everything(0))
    assert log.epoch == 1 and math.isfinite(log.history[0]["loss"])
    top = backend.generate_items([e.prompt for e in examples[:3]], IndexTrie(indices), beam=4)
    assert all(len({i for i, _ in row}) == 4 and all(0 <= i < ITEMS for i, _ in row)
               for row in top)
    scores = backend.code_scorer(examples[0].prompt, LEVELS)(np.array([[0], [3]]))
    assert scores.shape == (2, K) and (scores < 0).all() and (np.exp(scores).sum(1) < 1).all()
    assert backend.sequence_logprob(examples[0].prompt, "<a_0><b_0>") < 0


def test_hf_backend_errors_are_one_line(tmp_path):
    errors = []
    if importlib.util.find_spec("peft") is None:
        with pytest.raises(ImportError, match="pip install peft") as err:
            HFBackend(tmp_path, LEVELS, K, lora_r=8)
        errors.append(err)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU") as err:
            HFBackend(tmp_path, LEVELS, K, device="cuda")
        errors.append(err)
    with pytest.raises(FileNotFoundError, match="config.json") as err:
        HFBackend(tmp_path, LEVELS, K)
    errors.append(err)
    assert all("\n" not in str(e.value) for e in errors)


def test_load_backend_names():
    assert BACKENDS == ("tiny", "hf")
    assert isinstance(load_backend("tiny", levels=2, codebook_size=3), TinyBackend)
    with pytest.raises(ValueError, match="unknown generative backend 'nope'; choose one of "
                                         "tiny, hf"):
        load_backend("nope")


def test_length_batches_cover_every_example_once_with_less_padding():
    from facelib.generative.backend import length_batches

    rng_lengths = np.random.default_rng(1)
    lengths = rng_lengths.integers(5, 160, size=1000)
    plain = length_batches(lengths, 64, 1, np.random.default_rng(0))
    assert np.array_equal(np.concatenate(plain), np.random.default_rng(0).permutation(1000))
    pooled = length_batches(lengths, 64, 8, np.random.default_rng(0))
    assert sorted(np.concatenate(pooled).tolist()) == list(range(1000))
    assert max(len(b) for b in pooled) == 64

    def padded(batches):  # tokens after padding each batch to its longest sequence
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded(pooled) < 0.8 * padded(plain)
    with pytest.raises(ValueError, match="pool"):
        length_batches(lengths, 64, 0, np.random.default_rng(0))

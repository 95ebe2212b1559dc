"""The ``text`` stage: profiles, their embeddings, the vocabulary and its codebook.

Reads ``data/processed/<dataset>/`` and writes ``data/text/<dataset>/`` in one step
(a temporary folder renamed into place, so a failed run leaves the previous complete
output or nothing):

======================  =================================================================
``profiles.json``       ``{"user": [...], "item": [...], "builder": name}``
``user_emb.npy``        [n_users, 384] float32, unit norm: encoded user profiles
``item_emb.npy``        [n_items, 384] float32, unit norm: encoded item profiles
``vocabulary.csv``      ``word,token_id`` sorted by token id (V rows)
``codebook.npy``        [V, 384] float32: token-embedding rows of the vocabulary
``word_emb.npy``        [V, 384] float32, unit norm: each vocabulary word encoded alone (the
                        sentence space the descriptor studies compare words in)
``meta.json``           builder, encoder, dims, counts, parameters; written last
======================  =================================================================
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelib import paths
from facelib.config import dataset_param, device_param, param
from facelib.data.dataset import load_dataset
from facelib.io import publish
from facelib.text.encoder import FrozenEncoder, TextError
from facelib.text.profiles import BUILDERS, Profiles, select_builder
from facelib.text.vocabulary import build_vocabulary, codebook

FORMAT_VERSION = 2
FILES = ("profiles.json", "user_emb.npy", "item_emb.npy", "vocabulary.csv", "codebook.npy",
         "word_emb.npy", "meta.json")


@dataclass(frozen=True)
class TextParams:
    """``params.yaml`` section ``text``."""

    dataset: str = dataset_param()
    builder: str = param("auto", choices=BUILDERS,
                         help="profile builder: template, given (RLMRec), auto")
    batch_size: int = param(128, ge=1, le=4096, help="texts per encoder batch")
    max_length: int = param(256, ge=8, le=512, help="WordPiece tokens kept per profile")
    min_zipf: float = param(3.0, ge=0.0, le=8.0, help="vocabulary: min wordfreq Zipf")
    min_word_len: int = param(3, ge=1, le=20, help="vocabulary: min letters per word")
    device: str = device_param("cpu")


@dataclass
class TextArtifacts:
    """Everything the text stage wrote for one dataset."""

    profiles: Profiles
    user_emb: np.ndarray  # [n_users, 384] float32
    item_emb: np.ndarray  # [n_items, 384] float32
    vocabulary: pd.DataFrame  # word, token_id (V rows)
    codebook: np.ndarray  # [V, 384] float32
    word_emb: np.ndarray  # [V, 384] float32, each word encoded alone
    meta: dict[str, Any]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _write(out: Path, profiles: Profiles, user_emb: np.ndarray, item_emb: np.ndarray,
           vocab: pd.DataFrame, cb: np.ndarray, word_emb: np.ndarray,
           meta: dict[str, Any]) -> None:
    """Write all files into a temporary sibling of ``out``, then swap it in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    old = out.parent / f".{out.name}-old"
    try:
        (tmp / "profiles.json").write_text(json.dumps(
            {"builder": profiles.builder, "user": profiles.user, "item": profiles.item}))
        np.save(tmp / "user_emb.npy", user_emb)
        np.save(tmp / "item_emb.npy", item_emb)
        vocab.to_csv(tmp / "vocabulary.csv", index=False)
        np.save(tmp / "codebook.npy", cb)
        np.save(tmp / "word_emb.npy", word_emb)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def profile_health(parts: dict[str, tuple[list[str], np.ndarray]]) -> dict[str, Any]:
    """Count empty profiles and profiles sharing one embedding, per entity type.

    Every profile of a type encoding to the same vector (all empty, say) leaves nothing to
    align with: :class:`TextError`. Fewer such profiles: a one-line warning with the counts,
    also returned for the metrics."""
    import warnings

    out: dict[str, Any] = {}
    for kind, (texts, emb) in parts.items():
        empty = sum(1 for t in texts if not str(t).strip())
        distinct = len(np.unique(np.round(emb, 5), axis=0)) if len(emb) else 0
        out[kind] = {"empty": empty, "shared_embedding": int(len(emb) - distinct)}
        if len(emb) > 1 and distinct == 1:
            raise TextError(f"all {len(emb)} {kind} profiles encode to one embedding ({empty} "
                            f"empty): they carry nothing to align with; fix the profiles "
                            f"(the RLMRec files) or set text.builder: template")
        if empty or distinct < len(emb):
            warnings.warn(f"{empty} of {len(emb)} {kind} profiles are empty and "
                          f"{len(emb) - distinct} share an embedding with another one",
                          stacklevel=2)
    return out


def run_text_stage(p: TextParams, progress: bool = False) -> dict[str, Any]:
    """Build, encode and write the text artifacts of ``p.dataset``; return the metrics
    (counts, mean profile length in tokens, vocabulary size, seconds per part, peak MB)."""
    seconds: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now

    ds = load_dataset(paths.processed_dir(p.dataset))
    profiles = select_builder(p.builder, ds).build(ds)
    lap("profiles")
    encoder = FrozenEncoder.load(p.device)
    lap("load_encoder")
    user_emb = encoder.encode_texts(profiles.user, p.batch_size, p.max_length, progress)
    item_emb = encoder.encode_texts(profiles.item, p.batch_size, p.max_length, progress)
    lap("encode")
    degenerate = profile_health({"user": (profiles.user, user_emb),
                                 "item": (profiles.item, item_emb)})
    vocab = build_vocabulary(encoder.tokenizer, p.min_zipf, p.min_word_len)
    if vocab.empty:
        raise TextError(f"the vocabulary is empty (min_zipf {p.min_zipf}, min_word_len "
                        f"{p.min_word_len}); lower text.min_zipf or text.min_word_len")
    cb = codebook(encoder, vocab).numpy()  # [V, 384]
    word_emb = encoder.encode_texts(vocab["word"].astype(str).tolist(), p.batch_size,
                                    p.max_length, progress)  # [V, 384]
    lap("vocabulary")
    n_tokens = np.array([len(x) for x in encoder.token_ids(profiles.user + profiles.item,
                                                           max_length=None)])
    n_user = len(profiles.user)
    meta = {
        "format": FORMAT_VERSION, "dataset": ds.name, "builder": profiles.builder,
        "encoder": encoder.name, "encoder_package": encoder.package,
        "model_dir": encoder.path.name, "pooling": "mean over attention mask, L2 norm",
        "dim": encoder.dim, "token_vocab_size": int(encoder.token_embeddings.shape[0]),
        "n_users": ds.n_users, "n_items": ds.n_items, "vocabulary_size": len(vocab),
        "max_length": p.max_length, "min_zipf": p.min_zipf, "min_word_len": p.min_word_len,
    }
    out = paths.text_dir(p.dataset)
    _write(out, profiles, user_emb, item_emb, vocab, cb, word_emb, meta)
    lap("write")
    return {
        "dataset": ds.name,
        "builder": profiles.builder,
        "encoder": encoder.name,
        "n_user_profiles": n_user,
        "n_item_profiles": len(profiles.item),
        "mean_profile_tokens": round(float(n_tokens.mean()), 1),
        "mean_user_profile_tokens": round(float(n_tokens[:n_user].mean()), 1),
        "mean_item_profile_tokens": round(float(n_tokens[n_user:].mean()), 1),
        "max_profile_tokens": int(n_tokens.max()),
        "truncated_profiles": int((n_tokens > p.max_length).sum()),
        "degenerate_profiles": degenerate,
        "vocabulary_size": len(vocab),
        "seconds": {**seconds, "total": round(time.perf_counter() - start, 2)},
        "peak_rss_mb": peak_rss_mb(),
        "device": str(encoder.device),
    }


def load_text_artifacts(name: str) -> TextArtifacts:
    """Load ``data/text/<name>/``; a missing or corrupt folder raises :class:`TextError`
    naming the fix."""
    folder = paths.text_dir(name)
    if not (folder / "meta.json").is_file():
        raise TextError(f"no text artifacts for dataset {name} at {folder}; run the text "
                        f"stage first (`dvc repro text` or notebooks/20_text.ipynb)")
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise TextError(f"text artifacts at {folder} are corrupt ({type(exc).__name__} in "
                        f"meta.json); run the text stage again") from None
    if meta.get("format") != FORMAT_VERSION:
        raise TextError(f"text artifacts at {folder} have format {meta.get('format')}, not "
                        f"{FORMAT_VERSION} (an older version wrote them); run the text stage "
                        f"again (dvc repro text)")
    try:
        prof = json.loads((folder / "profiles.json").read_text())
        profiles = Profiles(user=prof["user"], item=prof["item"], builder=prof["builder"])
        user_emb = np.load(folder / "user_emb.npy")
        item_emb = np.load(folder / "item_emb.npy")
        vocab = pd.read_csv(folder / "vocabulary.csv", keep_default_na=False,
                            dtype={"word": str, "token_id": np.int64})
        cb = np.load(folder / "codebook.npy")
        word_emb = np.load(folder / "word_emb.npy")
    except (OSError, ValueError, KeyError) as exc:
        raise TextError(f"text artifacts at {folder} are corrupt ({type(exc).__name__}); "
                        f"run the text stage again") from None
    dim = meta.get("dim")
    expected = {"user_emb": (meta.get("n_users"), dim), "item_emb": (meta.get("n_items"), dim),
                "codebook": (meta.get("vocabulary_size"), dim)}
    expected["word_emb"] = expected["codebook"]
    actual = {"user_emb": user_emb.shape, "item_emb": item_emb.shape, "codebook": cb.shape,
              "word_emb": word_emb.shape}
    if (meta.get("format") != FORMAT_VERSION or expected != actual
            or len(profiles.user) != meta.get("n_users")
            or len(profiles.item) != meta.get("n_items")
            or len(vocab) != meta.get("vocabulary_size")):
        raise TextError(f"text artifacts at {folder} are inconsistent (format or shapes); "
                        f"run the text stage again")
    return TextArtifacts(profiles=profiles, user_emb=user_emb, item_emb=item_emb,
                         vocabulary=vocab, codebook=cb, word_emb=word_emb, meta=meta)

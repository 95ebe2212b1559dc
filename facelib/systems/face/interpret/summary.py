"""From per-run numbers to the metrics tree, tables, and the sentences the notebook prints.

Every study appends records ``(study, backbone, variant, entity, metric, run, value)``;
``run`` is the seed (or the seed pair "0~1" for stability). :func:`aggregate` nests them::

    metrics[study][backbone][variant][entity][metric] = {"mean", "std", "runs": {run: value}}

:func:`verdicts` reads that tree only, so the conclusions are always the numbers' own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from facelib.systems.face.interpret.descriptors import LABELS

STUDIES = ("retrieval", "keywords", "genre", "usage", "stability", "item_retrieval",
           "item_generation")


@dataclass(frozen=True)
class Record:
    study: str
    backbone: str
    variant: str
    entity: str
    metric: str
    run: str
    value: float


def records_for(study: str, backbone: str, variant: str, entity: str, run: Any,
                values: dict[str, float]) -> list[Record]:
    """One record per metric of ``values``."""
    return [Record(study, backbone, variant, entity, m, str(run), float(v))
            for m, v in values.items()]


def aggregate(records: list[Record]) -> dict[str, Any]:
    """Nest ``records`` (module docstring); mean and sample std over runs (0 for one run)."""
    groups: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for r in records:
        groups[(r.study, r.backbone, r.variant, r.entity, r.metric)][r.run] = r.value
    tree: dict[str, Any] = {}
    for (study, bk, var, ent, met), runs in groups.items():
        vals = np.array(list(runs.values()), dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        mean = float(finite.mean()) if len(finite) else None
        std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        if mean is not None and std <= 1e-12 * max(1.0, abs(mean)):
            std = 0.0  # identical runs (float noise of the mean)
        leaf = {"mean": mean, "std": std,
                "runs": {k: (v if np.isfinite(v) else None) for k, v in runs.items()}}
        tree.setdefault(study, {}).setdefault(bk, {}).setdefault(var, {}).setdefault(
            ent, {})[met] = leaf
    return tree


def leaf(metrics: dict[str, Any], study: str, backbone: str, variant: str, entity: str,
         metric: str) -> dict[str, Any] | None:
    """One leaf of the tree, or None when it is absent."""
    try:
        return metrics[study][backbone][variant][entity][metric]
    except (KeyError, TypeError):
        return None


def study_table(metrics: dict[str, Any], study: str, backbone: str,
                digits: int = 4) -> pd.DataFrame:
    """Rows: variants; columns: (entity, metric); cells "mean ± std" over runs."""
    part = metrics.get(study, {}).get(backbone, {})
    rows = {}
    for var, ents in part.items():
        rows[LABELS.get(var, var)] = {
            (ent, met): (f"{v['mean']:.{digits}g}" if v["mean"] is not None else "n/a")
            + (f" ± {v['std']:.{max(digits - 2, 1)}g}" if v["std"] else "")
            for ent, mets in ents.items() for met, v in mets.items()}
    return pd.DataFrame(rows).T


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 0.01 else f"{x:.3f}"


def _wins(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, int]:
    """(runs where ``a`` is higher than ``b``, runs both have)."""
    shared = [r for r in a["runs"] if r in b["runs"] and a["runs"][r] is not None
              and b["runs"][r] is not None]
    return sum(a["runs"][r] > b["runs"][r] for r in shared), len(shared)


def _beats(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A higher mean and a higher value on every paired run."""
    wins, n = _wins(a, b)
    return a["mean"] > b["mean"] and wins == n


def _compare(a: dict[str, Any], b: dict[str, Any], name: str, unit: str = "seed") -> str:
    """"beats map-only 0.012 (higher on 3 of 3 seeds)" etc., from means and paired runs:
    "beats" needs a higher mean and a higher value on every paired run."""
    wins, n = _wins(a, b)
    if a["mean"] > b["mean"]:
        verb = "beats" if wins == n else "is higher on average than"
    elif a["mean"] == b["mean"]:
        verb = "ties with"
    else:
        verb = "does not beat"
    return f"{verb} {name} {_fmt(b['mean'])} (higher on {wins} of {n} {unit}{'s' * (n != 1)})"


def _sentence(metrics: dict[str, Any], study: str, backbone: str, entity: str, metric: str,
              what: str, reference: bool = True) -> str | None:
    face = leaf(metrics, study, backbone, "face", entity, metric)
    if face is None or face["mean"] is None:
        return None
    unit = "seed pair" if study == "stability" else "seed"
    parts = [f"{what}, {backbone}: FACE {_fmt(face['mean'])}"]
    for var, name in (("map", "map-only"), ("random", "random words"),
                      ("prior", "the genre prior")):
        other = leaf(metrics, study, backbone, var, entity, metric)
        if other is not None and other["mean"] is not None:
            parts.append(_compare(face, other, name, unit))
    text = "; ".join(parts[:1] + [", ".join(parts[1:])]) if len(parts) > 1 else parts[0]
    ref = leaf(metrics, study, backbone, "nearest", entity, metric)
    rnd = leaf(metrics, study, backbone, "random", entity, metric)
    if reference and ref is not None and ref["mean"] is not None:
        text += f". The nearest-words reference reaches {_fmt(ref['mean'])}"
        if rnd is not None and rnd["mean"] is not None and ref["mean"] > rnd["mean"]:
            gap = (face["mean"] - rnd["mean"]) / (ref["mean"] - rnd["mean"])
            text += (f": FACE covers {100 * gap:.0f}% of the way from random words to it"
                     if gap >= 0 else ": FACE is below random words, none of the way to it")
        else:
            text += " (no better than random words here)"
    return text + "."


PRIMARY = (  # (study, entity, metric, what, compare with the reference)
    ("retrieval", "user", "mrr", "Profile retrieval of users (MRR)", True),
    ("retrieval", "item", "mrr", "Profile retrieval of items (MRR)", True),
    ("keywords", "user", "keyword_share", "Descriptors found in the user's profile", True),
    ("keywords", "item", "keyword_share", "Descriptors found in the item's profile", True),
    ("keywords", "user", "synonym_share", "Profile words or near synonyms, users", True),
    ("keywords", "item", "synonym_share", "Profile words or near synonyms, items", True),
    ("genre", "item", "map", "Genre consistency of items (mAP)", True),
    ("stability", "all", "jaccard", "Stability across seeds (mean Jaccard)", False),
)


def usage_sentence(metrics: dict[str, Any], backbone: str) -> str | None:
    """Codebook usage, stated without a winner (random words maximise usage)."""
    parts = []
    for var in ("face", "map", "random", "nearest"):
        d = leaf(metrics, "usage", backbone, var, "all", "distinct")
        h = leaf(metrics, "usage", backbone, var, "all", "perplexity")
        if d is not None and h is not None:
            parts.append(f"{LABELS[var]} {d['mean']:,.0f} ({h['mean']:,.0f})")
    if not parts:
        return None
    return (f"Codebook usage, {backbone}: distinct words used over all users and items "
            f"(perplexity) for " + ", ".join(parts) + "; random words use the codebook most "
            "evenly by construction, so more usage is not better in itself.")


def _candidates(metrics: dict[str, Any]) -> list[int]:
    """The N of the item-retrieval study present in ``metrics``, ascending."""
    names = metrics.get("chance", {}).get("item_retrieval", {})
    return sorted(int(k.split("@")[1]) for k in names)


def item_sentences(metrics: dict[str, Any], backbone: str) -> list[str]:
    """Item retrieval (headline: the fewest candidates, 10 as in the paper) and item
    generation, each against chance, map-only and random words."""
    out: list[str] = []
    chance = metrics.get("chance", {})
    ns = _candidates(metrics)
    judge = metrics.get("item_retrieval_info", {}).get("judge", "the judge")
    if ns:
        n = ns[0]
        s = _sentence(metrics, "item_retrieval", backbone, "item", f"acc@{n}",
                      f"Item retrieval among {n} candidates by {judge} (accuracy, chance "
                      f"{_fmt(1 / n)})")
        if s:
            out.append(s)
        parts = []
        for n in ns:
            face = leaf(metrics, "item_retrieval", backbone, "face", "item", f"acc@{n}")
            if face is not None and face["mean"] is not None:
                parts.append(f"N={n} {_fmt(face['mean'])} ({face['mean'] * n:.1f}x chance)")
        if len(parts) > 1:
            out.append(f"FACE item-retrieval accuracy by number of candidates, {backbone}: "
                       + ", ".join(parts) + ".")
    gen = chance.get("item_generation")
    if gen:
        ranked = metrics.get("item_generation_info", {}).get("items_ranked")
        among = f" among {ranked:,} items" if ranked else ""
        for metric, name in (("mrr", "MRR"), ("hit@10", "hit@10")):
            s = _sentence(metrics, "item_generation", backbone, "item", metric,
                          f"Item generation through FACE's decoder, true item{among} "
                          f"({name}, chance {_fmt(gen[metric])})", reference=False)
            ref = leaf(metrics, "item_generation", backbone, "nearest", "item", metric)
            if s and ref is not None and ref["mean"] is not None:
                s += (f" Nearest words through the same decoder: {_fmt(ref['mean'])} (not "
                      f"an upper reference here: the decoder learnt FACE's own words).")
            if s:
                out.append(s)
    return out


def scope_sentence(metrics: dict[str, Any]) -> str:
    """Which entities the studies read and whether the FACE runs converged."""
    runs = metrics.get("stopped_by") or {}
    capped = sorted(r for r, s in runs.items() if s == "cap")
    unknown = sorted(r for r, s in runs.items() if s not in ("cap", "early_stopping"))
    where = metrics.get("sample_from", "all entities")
    if not runs:
        return f"The studies read {where}."
    said = []
    if capped:
        said.append(f"{len(capped)} of {len(runs)} FACE runs ended at an epoch or step cap "
                    f"({', '.join(capped)})")
    if unknown:
        said.append(f"{len(unknown)} of {len(runs)} FACE runs do not say how they ended "
                    f"({', '.join(unknown)}: metrics JSON missing or older)")
    if said:
        return (f"The studies read {where}; {'; '.join(said)}, so their descriptors may show "
                f"the budget as much as the method.")
    return (f"The studies read {where}; all {len(runs)} FACE runs ended by early stopping.")


def text_measures(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(study, entity, metric, name) of every measure that asks whether the words say
    something about the entity's text: profile retrieval, keywords, genres, and item
    retrieval among the fewest candidates (not stability, usage or FACE's own decoder)."""
    out = [(study, entity, metric, what) for study, entity, metric, what, ref in PRIMARY
           if ref]
    ns = _candidates(metrics)
    if ns:
        out.append(("item_retrieval", "item", f"acc@{ns[0]}", f"item retrieval among {ns[0]}"))
    return out


def plain_sentence(metrics: dict[str, Any], backbone: str) -> str | None:
    """The verdict in one plain sentence: on how many text measures FACE's descriptors
    beat random words (higher mean and higher on every seed), and how far towards the
    nearest-words reference they get."""
    won, total, gaps = [], 0, []
    for study, entity, metric, what in text_measures(metrics):
        face = leaf(metrics, study, backbone, "face", entity, metric)
        rnd = leaf(metrics, study, backbone, "random", entity, metric)
        ref = leaf(metrics, study, backbone, "nearest", entity, metric)
        if face is None or rnd is None or face["mean"] is None or rnd["mean"] is None:
            continue
        total += 1
        if _beats(face, rnd):
            won.append(what[0].lower() + what[1:])
        if ref is not None and ref["mean"] is not None and ref["mean"] > rnd["mean"]:
            gaps.append((face["mean"] - rnd["mean"]) / (ref["mean"] - rnd["mean"]))
    if not total:
        return None
    if not won:
        return (f"In plain words, {backbone}: FACE's descriptors are no better than random "
                f"words on any of the {total} text measures.")
    far = (f"; at best they cover {100 * max(gaps):.0f}% of the way from random words to "
           f"the nearest-words reference" if gaps else "")
    return (f"In plain words, {backbone}: FACE's descriptors beat random words on "
            f"{len(won)} of {total} text measures ({'; '.join(won)}) and not on the "
            f"other {total - len(won)}{far}.")


def verdicts(metrics: dict[str, Any]) -> list[str]:
    """One sentence per study, backbone and headline metric, written from the numbers;
    each backbone's plain verdict first."""
    out = []
    for bk in metrics.get("backbones", []):
        s = plain_sentence(metrics, bk)
        if s:
            out.append(s)
        for study, entity, metric, what, ref in PRIMARY:
            s = _sentence(metrics, study, bk, entity, metric, what, ref)
            if s:
                out.append(s)
        s = usage_sentence(metrics, bk)
        if s:
            out.append(s)
        out += item_sentences(metrics, bk)
    return out

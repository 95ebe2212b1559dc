"""Stage ``loo_baselines``: the leave-one-out table's reference points, one run per model
and seed: SASRec (:mod:`facelib.generative.sasrec`) or a study CF backbone (MF, LightGCN)
trained on the leave-one-out training items with the study's loop and the ``train_cf``
section's hyperparameters. Every model ranks all items without masking the history, as
LC-Rec's evaluation. Every run writes its item embeddings
(``data/generative/loo_baselines/<dataset>/<run>/embeddings.npz``: ``item`` [I, d] and
``item_ids``; a CF run also ``user`` [U, d]); Semantic Convergence tokenises a CF run's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from facelib.config import ParamsError, build, param
from facelib.device import resolve_device
from facelib.generative.run import (
    BASELINES,
    LABELS,
    RunParams,
    load_split,
    publish_run,
    run_files,
    set_threads,
)
from facelib.generative.sasrec import SASRecConfig, evaluate_sasrec, train_cf_loo, train_sasrec
from facelib.train.params import TrainCFParams

STAGE = "loo_baselines"
_SASREC = {f.name: f.default for f in fields(SASRecConfig)}  # its defaults, written once


@dataclass(frozen=True)
class BaselineParams(RunParams):
    """``params.yaml`` section ``loo_baselines``: the model, and SASRec's settings (the CF
    backbones take theirs from the ``train_cf`` section)."""

    model: str = param("sasrec", choices=BASELINES, help="sasrec | mf | lightgcn")
    dim: int = param(_SASREC["dim"], ge=1, help="SASRec hidden size d")
    layers: int = param(_SASREC["layers"], ge=1, help="SASRec attention blocks")
    heads: int = param(_SASREC["heads"], ge=1, help="SASRec attention heads")
    dropout: float = param(_SASREC["dropout"], ge=0.0, lt=1.0, help="SASRec dropout")
    max_len: int = param(_SASREC["max_len"], ge=2, help="SASRec window of recent items")
    lr: float = param(_SASREC["lr"], gt=0.0, help="SASRec Adam learning rate")
    batch_size: int = param(_SASREC["batch_size"], ge=1, help="SASRec users per batch")
    loss: str = param(_SASREC["loss"], choices=("ce", "bce"),
                      help="ce: full softmax | bce: one sampled negative (the paper)")
    max_epochs: int = param(_SASREC["max_epochs"], ge=1, help="SASRec epoch cap")
    eval_every: int = param(_SASREC["eval_every"], ge=1, help="SASRec epochs per validation")
    patience: int = param(_SASREC["patience"], ge=1,
                          help="SASRec validations without gain before stopping")

    def sasrec_config(self) -> SASRecConfig:
        """The SASRec configuration these params describe."""
        try:
            return SASRecConfig(**{f.name: getattr(self, f.name) for f in fields(SASRecConfig)
                                   if hasattr(self, f.name)})
        except ValueError as exc:
            raise ParamsError(f"params [{STAGE}]: {exc}") from None


def run_baseline(p: BaselineParams, cf: TrainCFParams | None = None, progress: bool = False,
                 publish: bool = False) -> dict[str, Any]:
    """Train and evaluate ``p.model`` on seed ``p.seed``; write its files together
    (:func:`facelib.generative.run.publish_run`) and return its metrics. ``cf``: the
    ``train_cf`` section for a CF model (default: its dataclass defaults)."""
    set_threads(p.num_threads)
    device = resolve_device(p.device, STAGE)
    _, split = load_split(p.dataset)
    run = f"{p.model}-{p.seed}"
    files = run_files(STAGE, p.dataset, run, publish)
    start = time.perf_counter()
    arrays: dict[str, dict[str, Any]] = {}
    if p.model == "sasrec":
        config = p.sasrec_config()
        model, log = train_sasrec(split, config, p.seed, device=device, progress=progress,
                                  checkpoint_path=files.state("sasrec", publish),
                                  resume=p.resume)
        result = {"test": evaluate_sasrec(model, split, "test"), **log.summary(),
                  "config": asdict(config)}
        history, states = log.history, {"sasrec": {"model": model.state_dict(),
                                                    "config": asdict(config)}}
        # every run fills its data folder (a DVC output): SASRec's item table [I, d]
        item = model.item_emb.weight[1:].detach().cpu().numpy()
        arrays = {"embeddings": {"item": item, "item_ids": split.item_ids}}
    else:
        cf = build(TrainCFParams, {}, "train_cf") if cf is None else cf
        out = train_cf_loo(split, p.model, cf, p.seed, name=p.dataset, device=device,
                           progress=progress, resume=p.resume,
                           checkpoint_path=files.state(p.model, publish))
        test = {k: out.pop(k) for k in list(out) if "@" in k}
        emb = out.pop("embeddings")
        history = out.pop("history")
        states = {p.model: {"model": out.pop("state"), "params": out["params"]}}
        result = {"test": test, **out}
        arrays = {"embeddings": {"item": emb["item"], "user": emb["user"],
                                 "item_ids": split.item_ids, "user_ids": split.user_ids}}
    metrics = {"system": p.model, "label": LABELS[p.model], "protocol": "leave_one_out",
               "dataset": p.dataset, "seed": p.seed, "n_users": split.n_users,
               "n_items": split.n_items, **result,
               "seconds": round(time.perf_counter() - start, 2), "device": str(device),
               "threads": torch.get_num_threads(), "params": asdict(p)}
    publish_run(files, metrics, {p.model: history}, states, arrays)
    return {**metrics, "history": history}

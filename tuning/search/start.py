"""Starting a search from what is known: ``--try`` zoo names and a space's ``[[try]]`` tables, and
``--warm-start RUN`` (an earlier run's best configurations, and for BOHB its results as evidence).

At a run's first start the known configurations that fit its space and input become the oracle's
first draws (`tuning.engine.oracle.ResNetOracle.seeded`), in this order: ``[[try]]``, ``--try``,
the warm start's best first. They are kept in the oracle's state, so a resumed run goes on from
them as it would have uninterrupted, and ``run.json`` records where the run started from
(``start``). The ones left out are named in one line.
"""

from __future__ import annotations

import time

from ..config import maximized
from ..errors import UsageError
from ..run.folder import RunFolder
from ..run.records import record_key


def seed_start(ctx, tuner) -> None:
    """Give a new run's oracle its known configurations (see the module's docstring)."""
    cfg, oracle = ctx.config, tuner.oracle
    recorded = (ctx.folder.read("run.json") or {}).get("start")
    if oracle.trials or recorded is not None:  # started already: the oracle's state holds its start
        if recorded is not None and recorded.get("warm_start") != cfg.warm_start:
            ctx.log(f"note: {ctx.folder.path} started from {recorded.get('warm_start') or 'no earlier run'}; "
                    "--warm-start applies when a run starts")
        return
    known = [(str(t.get("name") or t.get("zoo") or f"[[try]] {i}"), dict(t)) for i, t in enumerate(ctx.space.tries, 1)]
    known += [(name, {"zoo": name}) for name in cfg.tries]
    earlier = _earlier(cfg.warm_start, oracle.first_round_size()) if cfg.warm_start else None
    if earlier is not None:
        known += earlier["best"]
    if not known:
        return
    kept, dropped = [], []
    for label, values in known:
        fitted, reason = ctx.sampler.values_from(values)
        if fitted is None:
            dropped.append(f"{label} ({reason})")
        elif fitted not in [v for _, v in kept]:
            kept.append((label, fitted))
    oracle.seeded = [v for _, v in kept]
    fed = _feed(ctx, oracle, earlier) if earlier is not None else 0
    oracle.save()  # before run.json says so: a kill in between seeds the same again
    info = ctx.folder.read("run.json") or {}
    ctx.folder.write("run.json", {**info, "start": {
        "warm_start": cfg.warm_start, "tried_first": [label for label, _ in kept], "left_out": dropped,
        "model_evidence": fed, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
    if kept:
        names = ", ".join(name for name, _ in kept)
        ctx.log(f"first: {len(kept)} known configuration(s) before any random draw: {names}"
                + (f"; {fed} results of {cfg.warm_start} feed the BOHB model" if fed else ""))
    if dropped:
        ctx.log(f"left out {len(dropped)} that do not fit this space or input: {'; '.join(dropped)}")


def _earlier(path: str, count: int) -> dict:
    """An earlier run's facts and its `count` best configurations (by its own objective), as
    ``(label, canonical values)``."""
    folder = RunFolder(path)
    info = folder.read("run.json", strict=True) or {}
    records = [r for r in folder.records().values() if r.completed and r.hyperparameters]
    if not records:
        raise UsageError(f"--warm-start {path} has no completed trial to start from; give a run that has one")
    best, seen = [], set()
    for record in sorted(records, key=record_key):
        if record.run not in seen:  # one configuration once (its promotions are the same values)
            seen.add(record.run)
            best.append((f"trial {record.trial_id} of {folder.path.name}", record.hyperparameters))
    return {"info": info, "records": records, "best": best[:count]}


def _feed(ctx, oracle, earlier: dict) -> int:
    """BOHB: the earlier run's results become evidence for its model, when they measure the same
    thing (dataset, image size and objective as this run's); the number fed."""
    cfg, info = ctx.config, earlier["info"]
    same = (info.get("dataset") == cfg.dataset
            and info.get("image_size") == (list(cfg.image_size) if cfg.image_size else None)
            and (info.get("objective") or "val_accuracy") == cfg.objective)
    prior = []
    for record in earlier["records"] if cfg.algorithm == "bohb" and same else ():
        values, _ = ctx.sampler.values_from(record.hyperparameters)
        if values is not None and record.score is not None:
            score = float(record.score)
            prior.append([values, score if maximized(cfg.objective) else -score, record.epochs or 1])
    oracle.prior = prior
    return len(prior)

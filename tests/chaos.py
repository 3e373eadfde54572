"""Chaos runs of the whole search: SIGKILL of the main process or the trial process (or its
standby) at random moments, each followed at once by the same command, until the search finishes.

Scores are rounded to multiples of 0.5 so that ties are everywhere (at the top too), and the
trial process hands over to a fresh one after every trial, through a standby started at once (so
a kill may hit a standby too). Each chaotic run must end exactly as an uninterrupted run with the
same seed, which runs every trial in one process: the same trials (configurations, rounds,
statuses, scores), the same best trial, ``best.json``, and an export that works.
`tests/test_chaos.py` runs a few in CI; for more:

    python -m tests.chaos --runs 10 --seed 1
    python -m tests.chaos --extend      # each run finished at --iterations 1, then extended to 2 under kills
    python -m tests.chaos --time-budget 60 --runs 3     # a binding deadline
    python -m tests.chaos --warm-start --algorithm bohb  # warm-started from a finished run of seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIES = {"score_step": 0.5}
FAULTS = {**TIES, "handover": "every-trial", "standby": "always"}
SPACE = """
description = "chaos: a tiny Hyperband search with ties everywhere"
[defaults]
dataset = "digits"
[hyperband]
max_epochs = 3
factor = 3
iterations = 1
[architecture]
stem = "cifar"
depth = [1, 3]
stages = [1, 2]
base_filters = [4, 8]
block = ["basic", "bottleneck"]
expansion = 1
shortcut = "B"
[training]
optimizer = ["sgd", "adam"]
schedule = "constant"
batch_size = 64
[training.sgd]
learning_rate = {min = 0.01, max = 0.1, log = true}
momentum = 0.9
[training.adam]
learning_rate = 0.003
"""


def command(space: pathlib.Path, results: pathlib.Path, seed: int, algorithm: str = "hyperband",
            recycle_mb: int = 1, iterations: int | None = 1, extra: tuple[str, ...] = ()) -> list[str]:
    """The search's command; `iterations` None: none given (a time budget's plan); `extra`: more options."""
    return [sys.executable, "-m", "tuning.search", "--space", str(space), "--results-dir", str(results),
            "--seed", str(seed), "--recycle-mb", str(recycle_mb), "--algorithm", algorithm,
            *(("--iterations", str(iterations)) if iterations else ()), *extra]


def start(cmd: list[str], faults: dict = FAULTS) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNING_FAULTS": json.dumps(faults)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def descendants(pid: int) -> list[int]:
    """Its children, theirs, and so on."""
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *descendants(kid)]
    return out


def trials(run_dir: pathlib.Path) -> dict[str, dict]:
    keys = ("bracket", "round", "parent", "status", "epochs", "hyperparameters", "val_accuracy")
    out = {}
    for p in sorted((run_dir / "trials").glob("*.json")):
        rec = json.loads(p.read_text())
        out[rec["trial_id"]] = {k: rec.get(k) for k in keys}
    return out


def uninterrupted(space: pathlib.Path, results: pathlib.Path, seed: int, algorithm: str = "hyperband",
                  iterations: int | None = 1, extra: tuple[str, ...] = ()) -> tuple[pathlib.Path, float]:
    """The run folder of the search run once without a kill, every trial in one process; and the
    wall time a run that hands over after every trial takes: its own, plus a process's start-up
    (its own, up to its first trial) for every trial."""
    t0, started = time.monotonic(), time.time()
    proc = start(command(space, results, seed, algorithm, recycle_mb=0, iterations=iterations, extra=extra),
                 faults=TIES)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    run_dir = _run_dir(results)
    records = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")]
    start_up = min(r["started"] for r in records) - started
    return run_dir, time.monotonic() - t0 + len(records) * start_up


def _run_dir(results: pathlib.Path) -> pathlib.Path:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return run_dir


def chaotic(space: pathlib.Path, results: pathlib.Path, seed: int, rng: random.Random, kills: int = 4,
            log=print, wall: float = 60.0, total: int = 6, algorithm: str = "hyperband",
            iterations: int | None = 1, extra: tuple[str, ...] = ()) -> tuple[pathlib.Path, list[str]]:
    """Kill -9 the main process or one of its descendants `kills` times at random moments,
    re-running the same command at once each time; then let it finish. Each kill comes within
    0.9 x the time an uninterrupted run (`wall` s, `total` trials) needs for the trials still to
    run, so that it lands before the search is done (a run also starts up and ends: seconds).
    Returns the run folder and what happened."""
    cmd = command(space, results, seed, algorithm, iterations=iterations, extra=extra)
    events = []
    for attempt in range(kills + 20):
        t0 = time.monotonic()
        done = len(list(results.glob("*/trials/*.json"))) if results.exists() else 0
        proc = start(cmd)
        left = wall * max(0.0, 1 - done / total)
        delay = rng.uniform(0.5, max(1.0, 0.9 * left)) if len(events) < kills else None
        try:
            out, err = proc.communicate(timeout=delay if delay is not None else 900)
        except subprocess.TimeoutExpired:
            kids = descendants(proc.pid)
            victim = rng.choice(kids) if kids and rng.random() < 0.5 else proc.pid
            who = "main" if victim == proc.pid else "trial process"
            os.kill(victim, signal.SIGKILL)
            out, err = proc.communicate(timeout=300)
            t_kill = time.monotonic() - t0
            events.append(f"{who} killed after {t_kill:.1f} s (exit {proc.returncode})")
            log(f"  {events[-1]}")
            if who == "main":
                assert proc.returncode == -signal.SIGKILL
            elif proc.returncode != 0:  # the supervisor saw its trial process die: one line, status 1
                assert proc.returncode == 1, err[-3000:]
                lines = err.strip().splitlines()
                assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
                assert "run the same command again" in lines[0], lines
            continue
        assert proc.returncode == 0, f"exit {proc.returncode}: {err[-3000:]}"
        events.append(f"finished in {time.monotonic() - t0:.1f} s")
        return _run_dir(results), events
    raise AssertionError(f"the search never finished: {events}")


def check_same(run_dir: pathlib.Path, reference: pathlib.Path, deadline: bool = False) -> None:
    """The chaotic run ended exactly as the uninterrupted one, with a working export. With a
    binding time budget (`deadline`) the two end where each one's deadline fell: the trials of
    the shorter are those of the longer up to there, and each ended within its budget plus its
    longest trial."""
    ours, theirs = trials(run_dir), trials(reference)
    if deadline:
        common = sorted(set(ours) & set(theirs))
        assert common == sorted(ours)[:len(common)] == sorted(theirs)[:len(common)], (sorted(ours), sorted(theirs))
        ours, theirs = ({k: t[k] for k in common} for t in (ours, theirs))
        for run in (run_dir, reference):
            timed = json.loads((run / "summary.json").read_text())["time_budget"]
            longest = max(json.loads(p.read_text()).get("seconds") or 0 for p in (run / "trials").glob("*.json"))
            assert timed["actual_seconds"] <= timed["budget_seconds"] + longest, (run, timed, longest)
    assert ours == theirs, {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs)
                            if ours.get(k) != theirs.get(k)}
    best, ref_best = (json.loads((d / "best.json").read_text()) for d in (run_dir, reference))
    assert deadline or best["trial_id"] == ref_best["trial_id"]
    assert (run_dir / "tuner" / f"trial_{best['trial_id']}" / "checkpoint.npz").exists()
    assert not list(run_dir.rglob("resume*"))
    proc = subprocess.run([sys.executable, "-m", "tuning.export", str(run_dir), "--format", "keras"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "export" / "model.keras").stat().st_size > 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments and victims")
    p.add_argument("--kills", type=int, default=4, help="kills per run")
    p.add_argument("--dir", default=None, help="working folder (default: a new temporary one)")
    p.add_argument("--algorithm", default="hyperband", help="the search's --algorithm (default: hyperband)")
    p.add_argument("--extend", action="store_true", help="finish each run at --iterations 1, then extend it to 2 "
                   "under the kills; the reference runs --iterations 2 at once")
    p.add_argument("--time-budget", type=int, metavar="SECONDS", help="every run with this --time-budget and no "
                   "--iterations: the deadline binds, and a killed run must match the reference up to its end")
    p.add_argument("--warm-start", action="store_true", help="every run warm-started from a finished run of seed 1")
    args = p.parse_args(argv)
    import tempfile

    work = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="chaos-"))
    space = work / "chaos.toml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE)
    iterations = None if args.time_budget else 2 if args.extend else 1
    extra = ("--time-budget", f"{args.time_budget}s") if args.time_budget else ()
    if args.warm_start:
        source, _ = uninterrupted(space, work / "source", 1, args.algorithm)
        extra += ("--warm-start", str(source))
    reference, wall = uninterrupted(space, work / "reference", 0, args.algorithm, iterations, extra)
    print(f"uninterrupted: {wall:.1f} s, {len(trials(reference))} trials")
    rng = random.Random(args.seed)
    failed = 0
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}:")
        try:
            if args.extend:  # the run of 1 iteration, finished (in trial processes, as a user runs it)
                proc = start(command(space, work / f"run{i}", 0, args.algorithm), faults=FAULTS)
                assert proc.communicate(timeout=900)[0] is not None and proc.returncode == 0
            run_dir, _ = chaotic(space, work / f"run{i}", 0, rng, args.kills, wall=wall,
                                 total=len(trials(reference)), algorithm=args.algorithm, iterations=iterations,
                                 extra=extra)
            check_same(run_dir, reference, deadline=bool(args.time_budget))
            print("  same trials, same best, export works")
        except AssertionError as e:
            failed += 1
            print(f"  FAILED: {str(e)[:2000]}")
    print(f"{args.runs - failed} of {args.runs} chaotic runs ended as the uninterrupted one; folders in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

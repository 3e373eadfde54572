"""Compare the trials of two finished run folders (same seed, same machine): do they hold the same
trials with the same scores?

    python scripts/compare_runs.py results-before/small-digits results-after/small-digits

Compares, per trial id: bracket, round, parent, epochs, status, hyperparameters, validation
accuracy, and the validation accuracy and loss of every epoch; then the best trial and its
test accuracy. Exit status 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import json
import pathlib
import sys


def trials(run_dir: pathlib.Path) -> dict[str, tuple]:
    out = {}
    for path in sorted((run_dir / "trials").glob("*.json")):
        r = json.loads(path.read_text())
        history = r.get("history") or {}
        out[r["trial_id"]] = (r.get("bracket"), r.get("round"), r.get("parent"), r.get("epochs"), r.get("status"),
                              json.dumps(r.get("hyperparameters"), sort_keys=True), r.get("val_accuracy"),
                              history.get("val_accuracy"), history.get("loss"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a_dir, b_dir = map(pathlib.Path, argv)
    a, b = trials(a_dir), trials(b_dir)
    same = [k for k in a if a[k] == b.get(k)]
    print(f"{len(a)} trials in {a_dir}, {len(b)} in {b_dir}; identical in bracket, round, parent, epochs, status, "
          f"hyperparameters, val_accuracy and every epoch's val_accuracy and loss: {len(same)}")
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            print(f"differs: trial {k}\n  {a.get(k)}\n  {b.get(k)}")
    missing = [str(d) for d in (a_dir, b_dir) if not (d / "best.json").exists()]
    if missing:
        print(f"no best.json in {', '.join(missing)}: that search has not finished")
        return 1
    best_a, best_b = (json.loads((d / "best.json").read_text()) for d in (a_dir, b_dir))
    for name, best in (("first", best_a), ("second", best_b)):
        print(f"best of the {name}: trial {best['trial_id']} val_accuracy {best['val_accuracy']} "
              f"test_accuracy {best['test_accuracy']}")
    keys = ("trial_id", "val_accuracy", "test_accuracy")
    return 0 if len(same) == len(a) == len(b) and all(best_a[k] == best_b[k] for k in keys) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

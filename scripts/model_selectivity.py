"""How well can a model fitted on a few results choose a configuration, on the surrogate benchmark?

    python scripts/model_selectivity.py --repeats 20

BOHB halves Hyperband's time on the surrogate benchmark only when its model chooses new
configurations about as well as taking the best of 16 random ones with the surrogate's own
knowledge (docs/BENCHMARKS.md, "How good BOHB's model would have to be"). This script asks
whether a learned model other than TPE could: a scikit-learn random forest (the kind of model
SMAC uses) is fitted on `n` random configurations and their exact surrogate accuracy after
`budget` epochs (no noise: kinder than real results), and takes the best predicted of
`--candidates` other random configurations. Its choice is scored by its "potential": the
surrogate's best accuracy for it at the full budget. The table gives the median potential over
`--repeats` independent draws, beside the random draws' own and the best of the candidates.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = ((10, 2), (20, 2), (40, 2), (20, 4), (40, 4), (10, 12), (20, 12))  # (results, epochs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--candidates", type=int, default=64)
    args = p.parse_args()
    from sklearn.ensemble import RandomForestRegressor

    from tuning.bench.algorithms import CURVES, surrogate_setup
    from tuning.bench.simulate import offline_oracle

    state = surrogate_setup(str(CURVES), "small", 0)
    surrogate, sampler = state["surrogate"], state["sampler"]
    encode = surrogate.encode

    def potential(values) -> float:
        return float(surrogate.predict(values)[0].max())

    chosen: dict[tuple[int, int], list[float]] = {s: [] for s in SETTINGS}
    random_draws, best_of = [], []
    most = max(n for n, _ in SETTINGS)
    for r in range(args.repeats):
        oracle = offline_oracle("hyperband", sampler, seed=100 + r, max_epochs=12, factor=3, iterations=1)
        drawn = [v for v in (oracle._random_values() for _ in range(most + args.candidates)) if v]
        seen, candidates = drawn[:most], drawn[most:]
        grid = np.array([encode(v) for v in candidates])
        for n, budget in SETTINGS:
            x = np.array([encode(v) for v in seen[:n]])
            y = np.array([surrogate.predict(v)[0][budget - 1] for v in seen[:n]])
            forest = RandomForestRegressor(n_estimators=100, random_state=r).fit(x, y)
            chosen[n, budget].append(potential(candidates[int(np.argmax(forest.predict(grid)))]))
        pots = [potential(v) for v in candidates]
        random_draws += pots
        best_of.append(max(pots))
    print(f"| chosen by | median potential ({args.repeats} repeats) |\n|---|---:|")
    print(f"| nothing (a random configuration) | {np.median(random_draws):.4f} |")
    for (n, budget), pots in chosen.items():
        print(f"| a random forest fitted on {n} results after {budget} epochs | {np.median(pots):.4f} |")
    print(f"| the surrogate itself (the best of {args.candidates}) | {np.median(best_of):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m resnet`: the zoo's parameter counts and multiply-adds next to the published ones.

`python -m resnet --build` also builds each model and counts its trainable weights.
"""

from __future__ import annotations

import argparse
import math
import sys

from .cost import count_cost
from .zoo import ZOO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"zoo models (default: all of {', '.join(ZOO)})")
    parser.add_argument("--build", action="store_true", help="also build each model and count its weights")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ZOO]
    if unknown:
        print(f"error: unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(ZOO)}", file=sys.stderr)
        return 2
    rows = [("model", "input", "layers", "params (ours)", "params (published)", "match", "GMACs")]
    if args.build:
        rows[0] += ("params (built)",)
    for name in args.names or ZOO:
        e = ZOO[name]
        cost = count_cost(e.spec, e.input_shape, e.num_classes)
        row = (name, "x".join(map(str, e.input_shape)), str(e.spec.num_layers), f"{cost.params:,}",
               f"{e.published_params:,}", "yes" if cost.params == e.published_params else "NO",
               f"{cost.flops / 1e9:.3f}")
        if args.build:
            from .builder import build_resnet

            model = build_resnet(e.spec, e.input_shape, e.num_classes)
            row += (f"{sum(math.prod(w.shape) for w in model.trainable_weights):,}",)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every plot of the package shares: matplotlib without a screen, PNGs written atomically,
wall-time axes, and a run's best-so-far as a step line."""

from __future__ import annotations

import io
import pathlib

from ..run.files import write_atomic

Curve = list[tuple[float, float | None]]  # (wall seconds, best val_accuracy so far or None)


def pyplot():
    """matplotlib's pyplot on its non-interactive backend, with the package's sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
                         "figure.dpi": 110})
    return plt


def save_png(fig, path: pathlib.Path) -> None:
    """Save a figure as a PNG atomically, so readers never see half an image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def time_unit(seconds: float) -> tuple[float, str]:
    """Divisor and axis label for wall times up to `seconds`."""
    if seconds > 3 * 3600:
        return 3600.0, "wall time (hours)"
    if seconds > 120:
        return 60.0, "wall time (minutes)"
    return 1.0, "wall time (seconds)"


def step_line(ax, curve: Curve, unit: float, **kwargs) -> None:
    """One run's best-so-far as a step line from its first completed trial to its last ended one."""
    pts = [(t / unit, v) for t, v in curve if v is not None]
    if not pts:
        return
    xs, ys = zip(*pts)
    end = curve[-1][0] / unit
    ax.step([*xs, end], [*ys, ys[-1]], where="post", **kwargs)

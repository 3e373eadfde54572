"""``state.json``: the sessions of a run (each time its command ran), so that a resumed run adds
up its wall time and places every trial on the run's own clock."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from .folder import RunFolder
from .records import TrialRecord, best_so_far


class Sessions:
    """``state.json``: the wall time of every session of a run (a resumed run adds one)."""

    def __init__(self, folder: RunFolder, role: str, t_start: float, resuming: bool):
        self.folder, self.t_start, self.saves = folder, t_start, role != "worker"
        state = (folder.read("state.json") if resuming else None) or {}
        self.state = {"sessions": state.get("sessions", []),
                      "created": state.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))}
        self.previous_wall = sum(s.get("wall_seconds", 0.0) for s in self.state["sessions"])
        self.current = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "t0": round(t_start, 3), "wall_seconds": 0.0,
                        "role": role}
        self.state["sessions"].append(self.current)

    def elapsed(self) -> float:
        """Wall seconds of the whole run so far, earlier sessions included.

        A worker's processes come and go (hand-overs, restarts) while the chief's session runs:
        a worker counts the chief's session, which the chief keeps saved as it serves."""
        if not self.saves:
            sessions = (self.folder.read("state.json") or {}).get("sessions") or []
            if sessions and sessions[-1].get("t0"):
                return sum(s.get("wall_seconds", 0.0) for s in sessions[:-1]) + time.time() - sessions[-1]["t0"]
        return self.previous_wall + time.time() - self.t_start

    def save(self) -> None:
        if self.saves:
            self.current["wall_seconds"] = round(time.time() - self.t_start, 3)
            self.folder.write("state.json", self.state)


def run_elapsed(sessions: list[dict], t: float) -> float:
    """Wall seconds of the run at time `t`: the sessions before the one running at `t`, in full,
    plus the time since that one started (time between sessions does not count)."""
    before = 0.0
    for i, s in enumerate(sessions):
        t0 = s.get("t0")
        if t0 is None:  # a session written before "t0" existed
            t0 = time.mktime(time.strptime(s["started"][:19], "%Y-%m-%dT%H:%M:%S"))
        nxt = sessions[i + 1] if i + 1 < len(sessions) else None
        if nxt is None or t < (nxt.get("t0") or math.inf):
            return before + max(0.0, t - t0)
        before += s.get("wall_seconds", 0.0)
    return before


def anytime_points(records: Iterable[TrialRecord], sessions: list[dict]) -> list[list]:
    """``[elapsed_seconds, best_val_so_far]`` after every ended trial, in the order they ended
    (best is None until a trial completed), on the run's clock (`run_elapsed`): summary.json's
    ``anytime``."""
    return [[round(t, 1), best] for t, best in best_so_far(records, lambda end: run_elapsed(sessions, end))]

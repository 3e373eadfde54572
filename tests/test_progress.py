"""Progress inside a trial (tuning/observe/progress.py): the callback on a fake clock, the renderer on a
terminal and off one, and a search through the CLI on a pseudo-terminal. The same in plain mode,
through a pipe, is checked on the JAX search of tests/test_backend_jax.py."""

import io
import json
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from tuning.observe.progress import (
    EVENT,
    Renderer,
    Reporter,
    TrialProgress,
    progress_callbacks,
    rendering,
    top_level_mode,
)
from tuning.observe.progress import PROGRESS_ENV as ENV

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def tracker(mode="plain", after=0.0, *, epochs=5, initial_epoch=2, batch_size=8, search_left=lambda done: 100.0):
    lines: list[str] = []
    clock = Clock()
    cb = TrialProgress(Reporter(lines.append, search_left), "0007", epochs=epochs, initial_epoch=initial_epoch,
                       batch_size=batch_size, mode=mode, after=after, clock=clock)
    return cb, clock, lines


def fake_fit(cb, clock, *, steps=4, step_seconds=1.0):
    """The hooks Keras calls in a fit, with `step_seconds` per training step."""
    cb.params = {"steps": steps, "epochs": cb.epochs, "verbose": 0}
    cb.on_train_begin()
    for epoch in range(cb.initial_epoch, cb.epochs):
        cb.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.t += step_seconds
            cb.on_train_batch_end(batch)
        cb.on_epoch_end(epoch)
    cb.close()


def test_plain_one_line_per_epoch_numbered_as_hyperband_counts():
    cb, clock, lines = tracker()  # a promoted trial: epochs 3..5 of 5
    fake_fit(cb, clock)
    assert lines == [
        # 4 steps of 8 images in 4 s; 8 of this fit's 12 steps left at 1 s a step.
        "  trial 0007 epoch 3/5: 8 images/s, trial ~0:00:08 left, search ~0:01:40 left",
        "  trial 0007 epoch 4/5: 8 images/s, trial ~0:00:04 left, search ~0:01:40 left",
        "  trial 0007 epoch 5/5: 8 images/s, trial ~0:00:00 left, search ~0:01:40 left",
    ]


def test_nothing_before_progress_after():
    cb, clock, lines = tracker(after=6.0)  # epochs end 4, 8 and 12 s into the fit
    fake_fit(cb, clock)
    assert [line.split(":")[0] for line in lines] == ["  trial 0007 epoch 4/5", "  trial 0007 epoch 5/5"]


def test_figures_for_a_known_clock():
    asked: list[float] = []
    cb, clock, _ = tracker(epochs=3, initial_epoch=1, batch_size=32,
                           search_left=lambda done: asked.append(done) or 42.0)
    cb.params = {"steps": 10}
    cb.on_train_begin()
    clock.t += 3.0  # building the step before the first batch counts towards the trial's pace
    cb.on_epoch_begin(1)
    for batch in range(4):
        clock.t += 0.5
        cb.on_train_batch_end(batch)
    clock.t += 1.0  # now: 6 s into the fit, 4 of its 20 steps done
    assert cb.figures() == {"trial": "0007", "epoch": 2, "epochs": 3, "step": 4, "steps": 10,
                            "images_per_s": 4 * 32 / 2.0,  # this epoch's images over its training seconds
                            "trial_left": 16 * 6.0 / 4,    # steps left x seconds per step so far
                            "search_left": 42.0}
    assert asked == [pytest.approx(0.4)]  # 4 of the epoch's 10 steps: the trial's finished fraction


def test_live_events_twice_a_second_at_most_and_an_end_event():
    cb, clock, lines = tracker("live", epochs=2, initial_epoch=0)
    fake_fit(cb, clock, steps=10, step_seconds=0.25)
    assert all(line.startswith(EVENT) for line in lines)
    events = [json.loads(line[len(EVENT):]) for line in lines]
    assert events[-1] == {"trial": "0007", "end": True}
    steps = [(e["epoch"], e["step"]) for e in events[:-1]]
    # A step every 0.25 s: an event every other step, and one at each epoch's end.
    assert steps == [(1, 1), (1, 3), (1, 5), (1, 7), (1, 9), (1, 10), (2, 2), (2, 4), (2, 6), (2, 8), (2, 10)]


def test_live_shows_nothing_before_progress_after_and_then_no_end_event():
    cb, clock, lines = tracker("live", after=60.0)
    fake_fit(cb, clock)
    assert lines == []


def test_off_or_no_reporter_means_no_callback(monkeypatch):
    reporter = Reporter(print, lambda done: 0.0)
    monkeypatch.setenv(ENV, "off")
    with progress_callbacks(reporter, "0001", epochs=2, initial_epoch=0, batch_size=8) as shown:
        assert shown == []
    monkeypatch.setenv(ENV, "plain")
    with progress_callbacks(None, "0001", epochs=2, initial_epoch=0, batch_size=8) as shown:
        assert shown == []


def test_keras_fit_passes_its_steps_to_the_callback(monkeypatch):
    import keras
    import numpy as np

    monkeypatch.setenv(ENV, "plain")
    monkeypatch.setenv("TUNING_PROGRESS_AFTER", "0")
    lines: list[str] = []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((64, 4), "float32"), np.zeros((64, 2), "float32")
    with progress_callbacks(Reporter(lines.append, lambda done: 1.0), "0003", epochs=3, initial_epoch=1,
                            batch_size=16) as shown:
        assert isinstance(shown[0], keras.callbacks.Callback)
        model.fit(x, y, batch_size=16, epochs=3, initial_epoch=1, callbacks=shown, verbose=0)
    assert [line.split(":")[0] for line in lines] == ["  trial 0003 epoch 2/3", "  trial 0003 epoch 3/3"]
    assert all("images/s, trial ~" in line for line in lines)


def event(**fields) -> str:
    return EVENT + json.dumps(fields)


RUNNING = {"trial": "0003", "epoch": 4, "epochs": 9, "steps": 10, "images_per_s": 1234.0, "trial_left": 12.0,
           "search_left": 220.0}


def test_live_renderer_refreshes_in_place_and_prints_lines_whole():
    from rich.console import Console

    out = io.StringIO()
    renderer = Renderer(print, "live", Console(file=out, force_terminal=True, width=100, highlight=False,
                                               markup=False, emoji=False))
    odd = "trial 0002 (bracket 1, round 0) [bold]x[/bold] :smile: 'quoted' 1,234 " + "x" * 80  # wider than 100
    renderer("searching space 'tiny' on digits")
    renderer(event(**RUNNING, step=3))
    renderer(event(**RUNNING, step=7))
    renderer(odd)
    renderer(event(trial="0003", end=True))
    renderer("best: trial 0002")
    renderer.close()
    text = out.getvalue()
    assert "trial 0003 epoch 4/9, step 3/10: 1,234 images/s, trial ~0:00:12 left, search ~0:03:40 left" in text
    assert "\r\x1b[2Ktrial 0003 epoch 4/9, step 7/10" in text  # the same line, redrawn in place
    for line in ("searching space 'tiny' on digits", odd, "best: trial 0002"):
        assert line + "\n" in text  # unchanged, on one line
    assert text.endswith("\x1b[2Kbest: trial 0002\n")  # the status line is gone
    assert EVENT.strip() not in text


def test_plain_and_quiet_renderers_never_pass_events_on():
    lines: list[str] = []
    plain = Renderer(lines.append, "plain")
    for line in ("searching space 'tiny'", event(**RUNNING, step=1), "  trial 0003 epoch 4/9: 9 images/s",
                 "trial 0003 (bracket 0, round 1, 9 epochs) val_accuracy 0.5"):
        plain(line)
    assert lines == ["searching space 'tiny'", "  trial 0003 epoch 4/9: 9 images/s",
                     "trial 0003 (bracket 0, round 1, 9 epochs) val_accuracy 0.5"]
    quiet: list[str] = []
    off = Renderer(quiet.append, "off")
    kept = ["trial 0001 (bracket 0, round 0, 1 epochs) val_accuracy 0.5", "[worker1] trial 0002 (bracket 0, ...",
            "warning: the report could not be written", "[worker0] error: something", "interrupted after 1 of 5 trials",
            "best: trial 0001 ...", "results: r/leaderboard.md", "view the trials: tensorboard --logdir r/tensorboard",
            "[launcher] worker1 exited with status 1; starting it again"]
    for line in ("note: space 'tiny' allows...", "searching space 'tiny' ...", "resuming r: 1 of 5 trials",
                 "[worker0] worker on CPU, tensorflow", "chief on 127.0.0.1:5000, 2 worker(s) on CPU",
                 "  trial 0001 epoch 1/1: 9 images/s", event(**RUNNING, step=1), *kept):
        off(line)
    assert quiet == kept


def test_top_level_mode(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert top_level_mode(quiet=False, terminal=True) == "live"
    assert top_level_mode(quiet=False, terminal=False) == "plain"
    assert top_level_mode(quiet=True, terminal=True) == "off"
    monkeypatch.setenv(ENV, "plain")  # a user's choice (or a parent's) wins, but live needs a terminal
    assert top_level_mode(quiet=False, terminal=True) == "plain"
    monkeypatch.setenv(ENV, "live")
    assert top_level_mode(quiet=False, terminal=False) == "plain"


def read_all(fd: int, proc=None, timeout: float = 5.0) -> bytes:
    """What a pseudo-terminal's other end has written, until it closes (or `proc` has exited and
    nothing more comes)."""
    out, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc is None or proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # every writer has closed it
            break
        if not chunk:
            break
        out += chunk
    return out


def test_rendering_on_a_real_terminal_leaves_it_clean_after_ctrl_c(monkeypatch):
    monkeypatch.setenv(ENV, "plain")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        with pytest.raises(KeyboardInterrupt), rendering(print, "live", terminal) as log:
            assert os.environ[ENV] == "live"  # for the child processes
            log(event(**RUNNING, step=3))
            raise KeyboardInterrupt
        assert os.environ[ENV] == "plain"
        text = read_all(master).decode()
    os.close(master)
    assert "\x1b[?25ltrial 0003 epoch 4/9, step 3/10" in text  # drawn, the cursor hidden meanwhile
    assert text.endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # then erased, the cursor shown again


def test_search_on_a_terminal_shows_a_status_line_refreshed_in_place(tiny_space, tmp_path):
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    # rich takes the width from COLUMNS before the terminal's own (a pytest-xdist worker has 80).
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "200", "TUNING_PROGRESS_AFTER": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in (ENV, "TUNING_FAULTS"):
        env.pop(name, None)
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir",
                                 str(tmp_path / "r"), "--max-epochs", "1", "--iterations", "2"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=err)
    os.close(slave)
    text = read_all(master, proc, timeout=300).decode()
    os.close(master)
    assert proc.wait(60) == 0, (tmp_path / "stderr").read_text()[-3000:]
    # Each finished trial's line, whole (the terminal turns "\n" into "\r\n").
    trial_lines = re.findall(r"(?<=\x1b\[2K)trial \d{4} \(bracket \d, round 0, 1 epochs\) val_accuracy [\d.]+ \| best "
                             r"[\d.]+ \| \d/2 trials \| [\d:]+ elapsed, ~[\d:]+ left\r\n", text)
    assert len(trial_lines) == 2, text
    # A status line for each trial, redrawn in place, and erased when the trial ends.
    assert re.search(r"\r\x1b\[2Ktrial 0000 epoch 1/1, step \d+/\d+: [\d,]+ images/s, trial ~[\d:]+ left, "
                     r"search ~[\d:]+ left", text), text
    assert "trial 0001 epoch 1/1" in text
    assert text.count("\x1b[?25l") == text.count("\x1b[?25h") == 2
    assert "\x1e" not in text
    assert text.endswith(f"view the trials: tensorboard --logdir {tmp_path / 'r' / 'tiny-digits' / 'tensorboard'}\r\n")

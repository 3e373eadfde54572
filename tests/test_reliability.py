"""Reliability: kill and resume, failing trials, locks, bad input. Faults are injected through
TUNING_FAULTS (tuning/faults.py), a test-only hook."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli(*args, faults=None, **kw):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TUNING_FAULTS", None)
    if faults:
        env["TUNING_FAULTS"] = json.dumps(faults)
    # Ctrl-C as in a terminal, even where this test runs with SIGINT ignored (a background job)
    return subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def run(*args, faults=None, timeout=600, extra=()):
    proc = cli(*args, *extra, faults=faults)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(path: pathlib.Path, proc, timeout=300):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def sequence(run_dir):
    recs = sorted((json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")),
                  key=lambda r: r["trial_id"])
    return [(r["trial_id"], r["bracket"], r["round"], r["parent"], r["status"], r["hyperparameters"])
            for r in recs]


def released(run_dir: pathlib.Path) -> bool:
    """The run's OS lock is free and its file names nobody."""
    from tuning.run.folder import RunFolder

    RunFolder(run_dir).check_lock()
    return (run_dir / ".lock").read_text() == ""


def snapshot(folder: pathlib.Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_sigkill_mid_trial_then_resume_matches_uninterrupted(finished_run, tiny_space, tmp_path):
    result, _, _ = finished_run
    results = tmp_path / "results"
    args = ["--space", tiny_space, "--results-dir", str(results), "--seed", "0"]
    run_dir = results / "tiny-digits"
    # Trial 0003 (2 epochs) sleeps after its first epoch: kill the search there.
    first = cli(*args, faults={"0003": "hang@0"})
    wait_for(run_dir / "tuner" / "trial_0003" / "resume.json", first)
    time.sleep(0.5)

    # A second search on the same folder is refused at once, naming the process.
    t0 = time.time()
    code, _, err = run(*args)
    assert code == 2 and f"in use by process {first.pid}" in err and len(err.strip().splitlines()) == 1
    assert time.time() - t0 < 60

    first.send_signal(signal.SIGKILL)
    first.wait()
    for p in run_dir.rglob("*.json"):  # nothing half-written
        json.loads(p.read_text())
    assert json.loads((run_dir / ".lock").read_text())["pid"] == first.pid  # its name stays; the OS lock does not

    code, out, err = run(*args)  # the same command, at once: the lock is free and the search resumes
    assert code == 0, err[-3000:]
    assert "resuming" in out
    resumed = json.loads((run_dir / "trials" / "0003.json").read_text())
    assert resumed["resumed_from_epoch"] == 1  # lost nothing but the interrupted epoch
    assert released(run_dir)
    # Exactly the trials (and, data order and random state being restored, the scores) of an
    # uninterrupted run with the same seed.
    assert sequence(run_dir) == sequence(result.run_dir)
    ours = {r[0]: json.loads((run_dir / "trials" / f"{r[0]}.json").read_text())["val_accuracy"]
            for r in sequence(run_dir)}
    theirs = {r[0]: json.loads((result.run_dir / "trials" / f"{r[0]}.json").read_text())["val_accuracy"]
              for r in sequence(result.run_dir)}
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert not list(run_dir.rglob("resume*"))


def test_a_kill_9_as_a_trial_ends_loses_no_record(finished_run, tiny_space, tmp_path):
    """The narrowest window: the oracle has saved trial 0001 as ended (a resumed search never runs
    it again), its record is not saved yet. The trial process is killed there (as the kernel's
    out-of-memory killer might); the search starts another, which completes the record and goes
    on: one command, exit 0, the uninterrupted run's trials and scores."""
    result, _, _ = finished_run
    results = tmp_path / "results"
    args = ["--space", tiny_space, "--results-dir", str(results), "--seed", "0"]
    run_dir = results / "tiny-digits"
    code, out, err = run(*args, faults={"kill": "ended@0001"})
    assert code == 0, err[-3000:]
    assert out.count("the trial process was killed by SIGKILL; starting another (1/3)") == 1, out[-3000:]
    assert sequence(run_dir) == sequence(result.run_dir)  # trial 0001's record included
    ours, theirs = ({p.stem: json.loads(p.read_text())["val_accuracy"] for p in (d / "trials").glob("*.json")}
                    for d in (run_dir, result.run_dir))
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert not list(run_dir.rglob("*.ending")) and not list(run_dir.rglob("resume*"))


def test_a_trial_process_killed_again_and_again_is_restarted_3_times_then_stops_in_one_line(tiny_space, tmp_path):
    """Trial 0001's process is killed with SIGKILL whenever it starts training: started again 3
    times, then the search stops, exit 1, in one line that says how to go on; trial 0000 stays
    done."""
    results = tmp_path / "results"
    code, out, err = run("--space", tiny_space, "--results-dir", str(results), faults={"0001": "killed"})
    assert code == 1, err[-3000:]
    assert [f"({k}/3)" in out for k in (1, 2, 3)] == [True] * 3 and "(4/3)" not in out, out[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the trial process was killed by SIGKILL" in lines[0], err[-3000:]
    assert "run the same command again" in lines[0]
    assert json.loads((results / "tiny-digits" / "trials" / "0000.json").read_text())["status"] == "COMPLETED"


@pytest.mark.parametrize("fault", ["hang@0", "deaf@0"])  # deaf: the first Ctrl-C gets lost in the trial process
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny_space, tmp_path, fault):
    results = tmp_path / "results"
    args = ["--space", tiny_space, "--results-dir", str(results)]
    proc = cli(*args, faults={"0001": fault})
    run_dir = results / "tiny-digits"
    wait_for(run_dir / "tuner" / "trial_0001" / "resume.json", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted after 1 of 5 trials" in out
    assert f"resume with: python -m tuning.search --space {tiny_space}" in err
    assert "Traceback" not in err
    assert released(run_dir)
    for p in run_dir.rglob("*.json"):
        json.loads(p.read_text())


def test_failing_trials_are_recorded_and_the_search_goes_on(tiny_space, tmp_path):
    results = tmp_path / "results"
    code, out, err = run("--space", tiny_space, "--results-dir", str(results),
                         faults={"0000": "raise", "0003": "nan", "0004": "oom"})
    assert code == 0, err[-3000:]
    run_dir = results / "tiny-digits"
    recs = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert recs["0000"]["status"] == "FAILED" and "injected fault" in recs["0000"]["error"]
    assert recs["0003"]["status"] == "FAILED" and "NaN" in recs["0003"]["error"]
    assert recs["0004"]["status"] == "COMPLETED" and recs["0004"]["oom_retry_batch_size"] == 32
    assert sum(r["status"] == "COMPLETED" for r in recs.values()) == 3
    board = (run_dir / "leaderboard.csv").read_text()
    assert "injected fault" in board and "FAILED" in board
    # The failure's reason is in TensorBoard too.
    from tensorboard.backend.event_processing import event_multiplexer

    mux = event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(run_dir / "tensorboard"))
    mux.Reload()
    text = mux.Tensors(recs["0000"]["run"], "status")[0].tensor_proto.string_val[0].decode()
    assert "FAILED" in text and "injected fault" in text
    assert "trial 0000" in out and "failed" in out


TWO_TUNED = """
[defaults]
dataset = "digits"
[hyperband]
max_epochs = 2
factor = 2
iterations = 10
[architecture]
stem = "cifar"
depth = 2
stages = 1
base_filters = [4, 8]
block = "basic"
preact = false
shortcut = "B"
[training]
optimizer = "sgd"
schedule = "constant"
batch_size = 64
[training.sgd]
learning_rate = {min = 0.01, max = 0.1, log = true}
momentum = 0.9
"""


def test_systematic_failure_stops_in_one_line_and_the_same_command_goes_on(tmp_path):
    space = tmp_path / "two.toml"
    space.write_text(TWO_TUNED)
    results = tmp_path / "results"
    args = ["--space", str(space), "--results-dir", str(results)]
    trials = results / "two-digits" / "trials"
    always = {f"{i:04d}": "raise" for i in range(40)}
    code, _, err = run(*args, faults=always)
    assert code == 1, err[-3000:]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.fullmatch(r"error: search stopped: the last \d+ trials all failed with the same error, in "
                        r"configurations that differ in every tuned value: RuntimeError: injected fault: a bug in "
                        r"this configuration\. Fix the cause, then run the same command again: .*", err.strip())
    first = len(list(trials.glob("*.json")))
    assert 3 <= first < 40
    # The cause is still there: the old streak does not stop the search at once; new failures do.
    code, _, err = run(*args, faults=always)
    assert code == 1 and "search stopped" in err
    second = len(list(trials.glob("*.json")))
    assert second >= first + 3
    # Fixed: the same command goes on to the end.
    code, out, err = run(*args)
    assert code == 0, err[-3000:]
    assert "best: trial" in out


def test_nan_losses_never_stop_the_search(tiny_space, tmp_path):
    results = tmp_path / "results"
    code, out, err = run("--space", tiny_space, "--results-dir", str(results), "--iterations", "2",
                         faults={f"{i:04d}": "nan" for i in range(6)})
    assert code == 0, err[-3000:]
    recs = [json.loads(p.read_text()) for p in (results / "tiny-digits" / "trials").glob("*.json")]
    assert sum(r["status"] == "FAILED" and "NaN" in r["error"] for r in recs) == 6
    assert any(r["status"] == "COMPLETED" for r in recs)


def test_unexpected_error_is_one_line_with_the_traceback_in_error_log(tiny_space, tmp_path):
    results = tmp_path / "results"
    args = ["--space", tiny_space, "--results-dir", str(results)]
    run_dir = results / "tiny-digits"
    # A corrupt results file the search reads at its end (an unexpected error, not bad input).
    code, _, err = run(*args, faults={"crash": "after-trials"})
    assert code == 1, err[-3000:]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"the full traceback is in {run_dir / 'error.log'}" in err and "run the same command again" in err
    assert "Traceback" in (run_dir / "error.log").read_text()
    code, _, err = run(*args, faults={"crash": "after-trials"}, extra=["--verbose"])
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    code, out, err = run(*args)  # the cause gone: the same command finishes the run
    assert code == 0, err[-3000:]
    assert (run_dir / "best.json").exists()


def test_gpus_that_do_not_exist_are_refused(tmp_path):
    results = tmp_path / "results"
    for extra in ([], ["--workers", "2"]):
        code, _, err = run("--gpus", "7", "--results-dir", str(results), *extra)
        assert code == 2, err[-3000:]
        assert err.startswith("error: --gpus 7: no GPU 7; this machine has ") and len(err.strip().splitlines()) == 1
    assert not results.exists()


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(9):
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_streamed_folder_names_a_bad_image_then_skips_it_and_exports(image_folder, tiny_space, tmp_path):
    """A search over a folder stops at its first unreadable image (exit 2, one line naming it, the
    folder untouched); the same command with --skip-bad-images resumes, leaves it out, says so and
    finishes; the export of a folder-trained model records its classes, input and normalisation
    and loads in a fresh process."""
    from tuning.export import export

    bad = image_folder / "dog" / "broken.png"
    bad.write_bytes(b"not a png")
    before = snapshot(image_folder)
    args = ["--space", tiny_space, "--dataset", str(image_folder), "--image-size", "16", "--results-dir",
            str(tmp_path / "results"), "--max-epochs", "1"]
    code, out, err = run(*args)
    assert code == 2, err[-3000:]
    assert err.strip() == (f"error: cannot read image {bad} (not an image format Pillow can read); replace it with a "
                           "readable image and run the same command again, or pass --skip-bad-images to go on without "
                           "it")
    assert snapshot(image_folder) == before
    run_dir = tmp_path / "results" / "tiny-pets"
    # Met while measuring the normalisation (before any trial): no run is left behind.
    assert not run_dir.exists() and "image cache: 0 of 19 images at 16x16" in out
    code, out, err = run(*args, "--skip-bad-images")
    assert code == 0, err[-3000:]
    assert f"note: left out 1 unreadable image(s), first {bad}" in out and "image cache: " in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["unreadable_images"] == [str(bad)] and summary["image_cache"]["images"] == 18
    res = export(run_dir, formats=("keras",), log=lambda s: None)
    card = res.card
    assert card["class_names"] == ["cat", "dog"] and card["input"]["shape"] == [None, 16, 16, 3]
    assert card["input"]["value_range"] == [0.0, 255.0]
    train = card["split_sizes"]["train"]
    assert card["input"]["normalization"]["sample_size"] == card["input"]["normalization"]["of"] == train == 11
    assert "measured on 11 of the 11 training images" in (res.output / "MODEL_CARD.md").read_text()
    script = ("import json, sys, keras, numpy as np; from tuning.data.images import decode; "
              "m = keras.saving.load_model(sys.argv[1], safe_mode=True); "
              "x = np.stack([decode(sys.argv[2], 16, 16)[0]]).astype('float32'); "
              "print(json.dumps(m.predict(x, verbose=0).shape))")
    proc = subprocess.run([sys.executable, "-c", script, str(res.output / "model.keras"), str(image_folder / "cat" /
                                                                                         "0.png")],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1]) == [1, 2], proc.stderr[-2000:]


def test_bad_input_exit_2_one_line_nothing_changed(finished_run, tiny_space, tmp_path):
    result, _, _ = finished_run
    # An existing run made with another space: copy the finished run under the name a
    # `--space small` run would use.
    results = tmp_path / "results"
    other = results / "small-digits"
    other.mkdir(parents=True)
    (other / "run.json").write_text((result.run_dir / "run.json").read_text())
    (other / "keep.txt").write_text("mine")
    bad_space = tmp_path / "bad.toml"
    bad_space.write_text("[architecture]\ndepth = 2\nstages = 1\n[training]\nbatch_size = 0\n")
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    cases = [
        (["--space", "nope"], "named spaces: cifar, imagenet, small"),
        (["--space", str(bad_space)], f"{bad_space}: [training] batch_size"),
        (["--dataset", str(tmp_path / "missing")], "does not exist"),
        (["--dataset", str(empty)], "holds images of 0 class(es)"),
        (["--space", "imagenet", "--dataset", "digits", "--image-size", "8"], "too small for every configuration"),
        (["--space", "small"], "holds a run made with space 'tiny'"),
        (["--results-dir", str(not_a_dir)], "not a writable folder"),
        (["--max-epochs", "0"], "max_epochs = 0"),
        (["--factor", "1"], "factor = 1"),
        (["--iterations", "-2"], "iterations = -2"),
        (["--max-epochs", "-5"], "max_epochs = -5"),
        (["--image-size", "0"], "not a size"),
    ]
    before = snapshot(tmp_path)
    for args, needle in cases:
        if "--results-dir" not in args:
            args = [*args, "--results-dir", str(results)]
        code, _, err = run(*args)
        assert code == 2, (args, err[-2000:])
        assert needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert snapshot(tmp_path) == before


def test_a_missing_best_checkpoint_is_recreated_and_the_run_finishes(finished_run, tiny_space, tmp_path):
    """A run left by a version that deleted the best trial's checkpoint (tied best scores): the
    same command again trains that configuration afresh, says so in one line, and finishes."""
    import shutil

    result, _, results = finished_run
    copy = tmp_path / "results"
    shutil.copytree(result.run_dir, copy / result.run_dir.name)
    run_dir = copy / result.run_dir.name
    best = json.loads((run_dir / "best.json").read_text())
    (run_dir / best["checkpoint"]).unlink()
    (run_dir / "best.json").unlink()
    code, out, err = run("--space", tiny_space, "--results-dir", str(copy), "--seed", "0")
    assert code == 0, err[-3000:]
    assert f"note: the checkpoint of the best trial {best['trial_id']} is missing; training its configuration " \
           "again from scratch" in out
    again = json.loads((run_dir / "best.json").read_text())
    assert again["trial_id"] == best["trial_id"] and again["recreated"]["reason"] == "checkpoint missing"
    assert (run_dir / best["checkpoint"]).exists() and 0 <= again["test_accuracy"] <= 1
    code, out, err = run("--space", tiny_space, "--results-dir", str(copy), "--seed", "0")  # nothing left to do
    assert code == 0 and "is missing" not in out


def test_another_keras_tuner_minor_version_is_refused_in_one_line(monkeypatch, capsys):
    import importlib.metadata

    from tuning.search.cli import main

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "1.5.0" if name == "keras-tuner" else real(name))
    assert main(["--space", "small", "--results-dir", "/nonexistent-never-created"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: keras-tuner 1.5.0 is installed, but this package was tested with 1.4 and relies on its "
                   "internals; install it with: pip install 'keras-tuner>=1.4.7,<1.5'\n")

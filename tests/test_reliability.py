"""Reliability: kill and resume, failing trials, locks, bad input. Faults are injected through
TUNING_FAULTS (tuning/faults.py), a test-only hook."""

import json
import os
import pathlib
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


def run(*args, faults=None, timeout=600):
    proc = cli(*args, faults=faults)
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
    assert json.loads((run_dir / ".lock").read_text())["pid"] == first.pid  # left behind by the dead process

    code, out, err = run(*args)  # the same command: takes over the stale lock and resumes
    assert code == 0, err[-3000:]
    assert "resuming" in out
    resumed = json.loads((run_dir / "trials" / "0003.json").read_text())
    assert resumed["resumed_from_epoch"] == 1  # lost nothing but the interrupted epoch
    assert not (run_dir / ".lock").exists()
    # Exactly the trials (and, data order and random state being restored, the scores) of an
    # uninterrupted run with the same seed.
    assert sequence(run_dir) == sequence(result.run_dir)
    ours = {r[0]: json.loads((run_dir / "trials" / f"{r[0]}.json").read_text())["val_accuracy"]
            for r in sequence(run_dir)}
    theirs = {r[0]: json.loads((result.run_dir / "trials" / f"{r[0]}.json").read_text())["val_accuracy"]
              for r in sequence(result.run_dir)}
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert not list(run_dir.rglob("resume*"))


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
    assert not (run_dir / ".lock").exists()
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


def test_systematic_failure_stops_with_one_line(tiny_space, tmp_path):
    results = tmp_path / "results"
    code, out, err = run("--space", tiny_space, "--results-dir", str(results),
                         faults={f"000{i}": "raise" for i in range(5)})
    assert code == 1
    assert err.strip() == ("error: search stopped: the last 3 trials all failed with: RuntimeError: injected "
                           "fault: a bug in this configuration")
    assert len(list((results / "tiny-digits" / "trials").glob("*.json"))) == 3


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder_loads_and_names_a_bad_image(image_folder):
    from tuning.data import DataError, load_image_folder

    data = load_image_folder(image_folder, (16, 16), seed=0)
    assert data.class_names == ["cat", "dog"] and data.input_shape == (16, 16, 3)
    assert sum(data.sizes().values()) == 12
    bad = image_folder / "dog" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png") as err:
        load_image_folder(image_folder, (16, 16), seed=0)
    assert "--skip-bad-images" in str(err.value)
    data = load_image_folder(image_folder, (16, 16), seed=0, skip_bad_images=True)
    assert data.skipped == [str(bad)] and sum(data.sizes().values()) == 12


def test_bad_input_exit_2_one_line_nothing_changed(finished_run, tiny_space, tmp_path, image_folder):
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
    (image_folder / "cat" / "0.png").write_bytes(b"garbage")
    cases = [
        (["--space", "nope"], "named spaces: cifar, imagenet, small"),
        (["--space", str(bad_space)], f"{bad_space}: [training] batch_size"),
        (["--dataset", str(tmp_path / "missing")], "does not exist"),
        (["--dataset", str(empty)], "holds images of 0 class(es)"),
        (["--dataset", str(image_folder), "--image-size", "16"], "0.png"),
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

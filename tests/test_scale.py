"""GPU options degrade cleanly on a CPU; keras-tuner's chief and workers run a search together."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_devices_default_to_float32_without_xla_on_cpu():
    import keras

    from tuning.runtime import setup_devices

    try:
        assert setup_devices("auto") == {"backend": "tensorflow", "gpus": [], "policy": "float32", "jit": False}
        assert setup_devices("mixed")["policy"] == "mixed_bfloat16"  # float16 has no fast CPU kernels
        assert setup_devices("bfloat16", jit=True) == {"backend": "tensorflow", "gpus": [], "policy": "mixed_bfloat16",
                                                       "jit": True}
        with pytest.raises(ValueError, match="precision='half'"):
            setup_devices("half")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_and_mirrored_strategy_search_on_cpu(tiny_space, tmp_path):
    import keras

    import tuning

    lines = []
    try:
        result = tuning.run_search(space=tiny_space, results_dir=tmp_path, precision="mixed", strategy="mirrored",
                               max_epochs=1, log=lines.append)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.summary["devices"]["policy"] == "mixed_bfloat16" and result.summary["replicas"] == 1
    assert any("data-parallel over 1 replica" in line for line in lines)
    assert result.summary["completed_trials"] == result.summary["trials"] >= 1
    # The softmax head stays float32 under mixed precision; the export is a float32 model.
    from tuning.export import export

    card = export(result.run_dir, formats=("keras",), log=lambda s: None).card
    model = keras.saving.load_model(result.run_dir / "export" / "model.keras", safe_mode=True)
    assert model.get_layer("head_dense").dtype_policy.compute_dtype == "float32"
    assert 0 <= card["test_accuracy"] <= 1


def test_xla_steps_are_kept_in_the_runs_compilation_cache_on_tensorflow(tiny_space, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir", str(tmp_path),
                           "--jit", "--max-epochs", "1", "--backend", "tensorflow"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "tiny-digits"
    assert list((run / "compile_cache").glob("xla_compile_cache__*"))  # TensorFlow's XLA cache entries
    (record,) = [json.loads(p.read_text()) for p in (run / "trials").glob("*.json")]
    assert record["compile_measure"] == "estimated" and 0 < record["compile_seconds"] < record["fit_seconds"]


def test_xla_training_step_runs_on_cpu():
    import keras_tuner as kt

    from search_spaces import load_space
    from tuning.data.datasets import load_digits
    from tuning.engine.hypermodel import ResNetHyperModel

    hm = ResNetHyperModel(load_space("small"), load_digits(0), jit_compile=True)
    hp = kt.HyperParameters()
    hp.Fixed("depth", 2)
    model = hm.build(hp)
    history = hm.fit(hp, model, epochs=1)
    assert model.jit_compile and len(history.history["loss"]) == 1


def _worker_pids(results: pathlib.Path) -> list[int]:
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:  # NUL-separated
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(results).encode() in cmd and b" --role worker" in cmd:
            pids.append(int(proc.name))
    return pids


def test_chief_and_two_asha_workers_each_trial_once_even_when_workers_die(tiny_space, tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNING_FAULTS": json.dumps(
        {"0000": "hang@0", "handover": "every-trial", "standby": "always"})}  # every hand-over through a standby
    proc = subprocess.Popen([sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir",
                             str(results), "--workers", "2", "--algorithm", "asha"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = results / "tiny-digits"
    t0 = time.time()
    try:
        while not (run_dir / "tuner" / "trial_0000" / "resume.json").exists():
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.time() - t0 < 300
            time.sleep(0.3)
        time.sleep(0.5)
        killed = _worker_pids(results)
        assert len(killed) >= 2
        for pid in killed:  # both workers (and any standby) die in the middle of their trials
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-4000:]
    assert out.count("starting it again") == 2
    assert out.count("continuing in a fresh one") >= 2  # workers handed over (through their standbys)
    assert "[worker0] trial " in out and "[worker1] trial " in out
    assert out.count("[worker0] worker on CPU") == out.count("[worker1] worker on CPU") == 1  # not at each hand-over

    records = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    ids = [r["trial_id"] for r in records]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == summary["trials"]  # every trial exactly once
    budget, started = summary["asha"]["budget_epochs"], summary["asha"]["epochs_started"]
    assert budget <= started == sum(r["epochs"] - r["initial_epoch"] for r in records) < budget + 2
    assert any(r["parent"] for r in records)  # ASHA promoted while the other worker trained
    workers = summary["workers"]
    assert workers["count"] == 2 and set(workers["per_worker"]) == {"tuner0", "tuner1"}
    assert 0 < workers["busy_share"] <= 1 and len(summary["anytime"]) == len(records)
    # Shares of the workers' summed time, which the time in trials bounds (the test split's evaluation aside).
    assert 0 < summary["compile_share"] < summary["fit_share"] <= workers["busy_share"] + 0.05
    assert "% of the 2 workers' time training, " in out
    assert sorted(p.name for p in (run_dir / "tuner").glob("trial_*")) == [f"trial_{i}" for i in sorted(ids)]
    assert all(r["status"] == "COMPLETED" for r in records), [(r["trial_id"], r["status"], r.get("error"))
                                                              for r in records]
    resumed = json.loads((run_dir / "trials" / "0000.json").read_text())
    assert resumed["resumed_from_epoch"] == 1  # run again from its last completed epoch
    for r in records:  # keras-tuner's own record agrees: each trial ended once, completed
        state = json.loads((run_dir / "tuner" / f"trial_{r['trial_id']}" / "trial.json").read_text())
        assert state["status"] == "COMPLETED"
    assert (run_dir / "leaderboard.csv").read_text().count("\n") == 1 + len(records)
    from .test_search import read_tensorboard

    _, sessions, experiment, scalars = read_tensorboard(run_dir / "tensorboard")
    assert set(sessions) == {r["run"] for r in records} and experiment is not None
    for r in records:
        steps = [s for s, _ in scalars(f"{r['run']}/validation", "epoch_accuracy")]
        assert max(steps) + 1 >= r["epochs"]
    from .test_reliability import released

    assert released(run_dir)


def test_workers_flag_rejects_zero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tuning.search", "--workers", "0", "--results-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--workers 0" in out.stderr


def test_kill_9_of_the_launcher_takes_chief_and_workers_with_it_and_the_same_command_resumes(tiny_space, tmp_path):
    results = tmp_path / "results"
    args = [sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir", str(results),
            "--workers", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while not (results / "tiny-digits" / "trials").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() - t0 < 300
        time.sleep(0.3)
    proc.kill()
    proc.wait()
    t0 = time.time()
    while any(str(results).encode() in p.read_bytes() for p in pathlib.Path("/proc").glob("[0-9]*/cmdline")
              if p.exists() and _readable(p)):
        assert time.time() - t0 < 10, "the chief or a worker outlived the launcher"
        time.sleep(0.2)
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert (results / "tiny-digits" / "best.json").exists()
    # The killed session's wall time counts (the chief saved it as it served), so the workers'
    # busy share stays a share.
    sessions = json.loads((results / "tiny-digits" / "state.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[0]["wall_seconds"] > 0
    summary = json.loads((results / "tiny-digits" / "summary.json").read_text())
    assert summary["wall_seconds"] >= sum(s["wall_seconds"] for s in sessions) - 1
    assert 0 < summary["workers"]["busy_share"] <= 1


def _readable(path: pathlib.Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def test_ctrl_c_kills_a_worker_that_cannot_stop_once_its_chief_has():
    """A worker caught in a call to its chief when Ctrl-C comes handles the Ctrl-C only when the
    chief answers (keras-tuner's calls wait for the oracle); once the chief has stopped that is
    never, so the launcher kills it after a grace period instead of waiting two minutes. A
    worker that does stop on Ctrl-C is left to stop."""
    from tuning.processes.child import ChildProcess, child_env, interrupt_all
    from tuning.search.workers import orphaned_worker

    def child(code):
        lines = []
        c = ChildProcess([sys.executable, "-c", f"import signal, sys, time\n{code}\nprint('up', flush=True)\n"
                                                "time.sleep(600)"], child_env(), lines.append)
        while not lines:
            assert c.poll() is None
            time.sleep(0.02)
        return c

    chief = child("")  # Ctrl-C ends it (KeyboardInterrupt)
    stuck = child("signal.signal(signal.SIGINT, signal.SIG_IGN)")  # as if blocked in a call to the chief
    saving = child("signal.signal(signal.SIGINT, lambda *a: (time.sleep(0.3), sys.exit(130)))")
    t0 = time.monotonic()
    interrupt_all([chief, stuck, saving], give_up=orphaned_worker(chief, grace=1.0))
    assert time.monotonic() - t0 < 10
    assert chief.poll() == -signal.SIGINT and saving.poll() == 130 and stuck.poll() == -signal.SIGKILL


def test_a_worker_started_by_hand_before_its_chief_waits_for_it_hands_over_and_outlives_kill_9s(tiny_space,
                                                                                                   tmp_path):
    from tuning.processes.system import free_port

    results = tmp_path / "results"
    run_dir = results / "tiny-digits"
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(free_port("127.0.0.1"))}
    cmd = [sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir", str(results)]

    def start(tuner_id: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=ROOT, env={**base, "KERASTUNER_TUNER_ID": tuner_id, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # As a job scheduler may start them: the worker first. It must not make the run folder,
    # which the chief would then refuse as "not a search run".
    worker = start("tuner0", TUNING_FAULTS=json.dumps({"handover": "every-trial", "0001": "hang@0"}))
    chief = None
    try:
        lines = []
        while not (lines and lines[-1].startswith("worker waiting for the chief at 127.0.0.1:")):
            lines.append(worker.stdout.readline())  # (past any start-up noise of TensorFlow's)
            assert lines[-1] and len(lines) < 50, "".join(lines)[-3000:]
        time.sleep(1)
        assert worker.poll() is None and not results.exists()
        chief = start("chief")
        t0 = time.time()
        while not (run_dir / "tuner" / "trial_0001" / "resume.json").exists():  # hangs after its first epoch
            assert chief.poll() is None and worker.poll() is None and time.time() - t0 < 300
            time.sleep(0.2)
        time.sleep(0.5)
        killed = _worker_pids(results)  # its trial process (the command above is its supervisor)
        assert killed
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        chief.kill()  # and the chief too, at the same moment; then the same command again
        chief.communicate()
        chief = start("chief")
        worker_out, _ = worker.communicate(timeout=600)  # (a worker that gave up would leave its chief waiting)
        assert worker.returncode == 0, worker_out[-3000:]
        chief_out, _ = chief.communicate(timeout=120)
    finally:
        for p in (worker, chief):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert chief.returncode == 0, chief_out[-3000:]
    assert "resuming " in chief_out
    # Its trials ran in trial processes that handed over to fresh ones (one per trial here), and
    # the one killed was started again.
    assert worker_out.count("continuing in a fresh one") >= 2
    assert "the trial process was killed by SIGKILL; starting another (1/3)" in worker_out
    assert worker_out.count("worker on CPU") == 1
    records = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    ids = [r["trial_id"] for r in records]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == summary["trials"] == summary["completed_trials"] >= 3
    assert {r["status"] for r in records} == {"COMPLETED"}
    assert next(r for r in records if r["trial_id"] == "0001")["resumed_from_epoch"] == 1
    # A worker started once the search has finished and its chief has gone does not wait for it
    # for ever: it says so, touches nothing and ends.
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    late = start("tuner1")
    late_out, _ = late.communicate(timeout=120)
    assert late.returncode == 0, late_out[-3000:]
    assert f"the search in {run_dir} has finished" in late_out and "waiting for the chief" not in late_out
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


@pytest.mark.parametrize("env, says", [
    ({"KERASTUNER_ORACLE_PORT": "80x"}, "KERASTUNER_ORACLE_PORT='80x' is not a port number"),
    ({"KERASTUNER_ORACLE_PORT": None}, "KERASTUNER_ORACLE_PORT='' is not a port number"),
    ({"KERASTUNER_TUNER_ID": None}, "KERASTUNER_TUNER_ID is not set"),
    ({"KERASTUNER_ORACLE_IP": "no-such-host.invalid"}, "KERASTUNER_ORACLE_IP='no-such-host.invalid' does not resolve"),
])
def test_incomplete_keras_tuner_variables_are_refused_in_one_line(tiny_space, tmp_path, monkeypatch, capsys, env, says):
    from tuning.search.cli import main

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    assert main(["--space", tiny_space, "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_worker_killed_as_its_trial_ends_loses_no_record(tiny_space, tmp_path):
    """The worker's trial process dies (SIGKILL) once the chief has saved trial 0001 as ended,
    before the worker saved its record: the chief completes the record when the search ends."""
    results = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNING_FAULTS": json.dumps({"kill": "ended@0001"})}
    done = subprocess.run([sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir",
                           str(results), "--workers", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "exited with status -9; starting it again (1/3)" in done.stdout
    run_dir = results / "tiny-digits"
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(records) == summary["trials"] == summary["completed_trials"] == 5
    assert records["0001"]["status"] == "COMPLETED" and records["0001"]["val_accuracy"] is not None
    assert records["0001"]["history"]["val_accuracy"]  # the worker's own record, kept as the trial ended
    assert not list(run_dir.rglob("*.ending")) and not list(run_dir.rglob("resume*"))

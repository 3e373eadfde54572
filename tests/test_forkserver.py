"""`tuning.forkserver`: children forked from a process that imported what they need, which look
like `subprocess.Popen` children to `ChildProcess`: exit statuses, signals, streams, the run's
lock, and what happens when the fork server or the process that started it dies."""

import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuning.processes.forkserver import ForkServer, start_for
from tuning.processes.child import ChildProcess, child_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    fs = ForkServer(child_env(), preload="")
    assert fs.wait_ready(60)
    yield fs
    fs.close()
    try:
        fs.proc.wait(10)  # it exits once its children have
    except subprocess.TimeoutExpired:
        left = subprocess.run(["ps", "-ww", "-o", "pid,stat,etimes,args", "--ppid", str(fs.proc.pid)],
                              capture_output=True, text=True).stdout
        fs.proc.kill()
        pytest.fail(f"the fork server outlived its asker; its children:\n{left}")


def _child(code: str, server, **kw) -> tuple[ChildProcess, list[str]]:
    lines: list[str] = []
    return ChildProcess([sys.executable, "-c", code], kw.pop("env", child_env()), lines.append,
                        forkserver=server, **kw), lines


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # A zombie has exited; its parent has not reaped it yet.
            if pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


# How each child ends: an exit status, a signal, or an exception (Python's status 1).
endings = st.one_of(st.integers(0, 255).map(lambda n: ("exit", n)),
                    st.sampled_from([("signal", signal.SIGKILL), ("signal", signal.SIGTERM),
                                     ("signal", signal.SIGINT), ("raise", 1)]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(endings, st.integers(0, 60), st.booleans(), st.booleans()), min_size=1, max_size=6)
       .flatmap(lambda plan: st.tuples(st.just(plan), st.permutations(range(len(plan))))))
def test_every_child_reports_its_own_output_and_exit_status(server, plan_and_order):
    """Children started together and ending in any order, each in its own way, with or without
    a pipe on stdin and stderr apart or merged: each one's poll/wait gives its own status (as
    subprocess would: -N for signal N; an unhandled Ctrl-C is -2 with a traceback, as Python
    ends so), its own lines and environment, and nothing else."""
    plan, order = plan_and_order
    started = []
    try:
        _start_and_end(server, plan, order, started)
    finally:  # whatever failed, leave no child behind
        for _, child, *_ in started:
            if child.poll() is None:
                child.stop()


def _start_and_end(server, plan, order, started):
    for i, (ending, ms, stdin, merge) in enumerate(plan):
        kind, value = ending
        body = {"exit": f"sys.exit({value})", "raise": "raise RuntimeError('boom')",
                "signal": "signal.pause()"}[kind]
        code = ("import os, sys, time, signal\n"
                f"print('child', os.environ['CHILD'], os.getcwd() == {os.getcwd()!r})\n"
                + ("print('read', sys.stdin.readline().strip())\n" if stdin else "")
                + f"time.sleep({ms / 1000})\n{body}\n")
        errors: list[str] = []
        child, lines = _child(code, server, env=child_env(CHILD=str(i)), stdin=stdin,
                              on_error_line=None if merge else errors.append)
        assert child.forked
        started.append((i, child, lines, errors, ending, stdin, merge))
    for _, child, *_, stdin, _ in started:
        if stdin:
            assert child.send(f"hello {child.proc.pid}")
    for i, child, lines, errors, (kind, value), stdin, merge in (started[k] for k in order):
        if kind == "signal":
            deadline = time.monotonic() + 10
            while not lines and time.monotonic() < deadline:  # it has started its body
                time.sleep(0.01)
            time.sleep(0.1)
            child.proc.send_signal(value)
        status = child.wait()
        expected = {"exit": value, "raise": 1, "signal": -value}[kind]
        assert status == expected == child.poll()
        assert lines[0] == f"child {i} True"
        if stdin:
            assert lines[1] == f"read hello {child.proc.pid}"
        tracebacks = [line for line in (lines if merge else errors) if line.startswith("Traceback")]
        assert len(tracebacks) == (kind == "raise" or (kind, value) == ("signal", signal.SIGINT))


def test_a_child_holds_the_lock_it_was_given_and_dies_with_a_killed_parent(tmp_path):
    """The lock travels to the child: it holds it after its parent closed its own copy. A
    ``kill -9`` of the parent takes the fork server and the child with it, so the lock is free at
    once (as for a child started by subprocess)."""
    lock, info = tmp_path / ".lock", tmp_path / "pids.json"
    script = f"""
import fcntl, json, os, sys, time
from tuning.processes.forkserver import ForkServer
from tuning.processes.child import ChildProcess, child_env
fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
fs = ForkServer(child_env(), preload="")
child = ChildProcess([sys.executable, "-c", "import time; time.sleep(600)"], child_env(), print,
                     pass_fds=(fd,), forkserver=fs)
assert child.forked
os.close(fd)
open({str(info)!r}, "w").write(json.dumps({{"server": fs.proc.pid, "child": child.proc.pid}}))
time.sleep(600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        t0 = time.monotonic()
        while not info.exists():
            assert parent.poll() is None and time.monotonic() - t0 < 60
            time.sleep(0.05)
        time.sleep(0.1)
        pids = json.loads(info.read_text())
        fd = os.open(lock, os.O_RDWR)
        with pytest.raises(BlockingIOError):  # the child holds it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        parent.kill()
        parent.wait()
        assert _gone(pids["server"], 5) and _gone(pids["child"], 5)
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the lock outlived the killed parent"
                time.sleep(0.05)
        os.close(fd)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_when_the_fork_server_dies_its_children_do_and_later_ones_start_the_usual_way():
    fs = ForkServer(child_env(), preload="")
    try:
        child, _ = _child("import time; time.sleep(600)", fs)
        assert child.forked
        os.kill(fs.proc.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL  # PR_SET_PDEATHSIG
        assert not fs.alive
        later, lines = _child("print('started anyway')", fs)
        assert not later.forked and later.wait() == 0 and lines == ["started anyway"]
    finally:
        fs.proc.kill()
        fs.proc.wait()


def test_ctrl_c_is_for_the_children_not_the_fork_server(server):
    """Ctrl-C at a terminal reaches every process of the group: the fork server ignores it (its
    children save first), a child gets Python's KeyboardInterrupt as usual."""
    child, lines = _child("import time\ntry:\n    print('up'); time.sleep(600)\nexcept KeyboardInterrupt:\n"
                          "    print('saved'); raise SystemExit(130)", server)
    while not lines:
        time.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGINT)
    child.proc.send_signal(signal.SIGINT)
    assert child.wait() == 130 and lines == ["up", "saved"]
    time.sleep(0.2)
    assert server.proc.poll() is None and server.alive


def test_a_child_runs_a_module_as_python_m_does(server, tmp_path):
    child, lines = _child("", server)
    child.wait()
    lines.clear()
    c = ChildProcess([sys.executable, "-m", "json.tool", "--compact"], child_env(), lines.append, stdin=True,
                     forkserver=server)
    assert c.forked
    c.send('{"a": [1, 2]}')
    c.proc.stdin.close()
    assert c.wait() == 0 and lines == ['{"a":[1,2]}']


def test_the_fork_server_is_used_only_where_forking_is_safe(monkeypatch):
    from tuning.config import SearchConfig

    monkeypatch.setattr("tuning.processes.forkserver.ForkServer", lambda env, label: "server")
    monkeypatch.setattr("tuning.processes.forkserver.nvidia_present", lambda: False)
    assert start_for(SearchConfig(), {}) == "server"
    for unsafe in ({"backend": "jax"}, {"jit": True}, {"gpus": "0"}, {"verbose": True}):
        assert start_for(SearchConfig(**unsafe), {}) is None, unsafe
    monkeypatch.setenv("TUNING_FORKSERVER", "0")
    assert start_for(SearchConfig(), {}) is None
    monkeypatch.delenv("TUNING_FORKSERVER")
    monkeypatch.setattr("tuning.processes.forkserver.nvidia_present", lambda: True)
    assert start_for(SearchConfig(), {}) is None


def test_the_fork_server_preloads_every_module_of_this_package_a_search_imports(tiny_space, tmp_path):
    """So that a forked trial process imports nothing of its own before its first trial."""
    script = f"""
import json, sys
from tuning.processes import forkserver
forkserver._preload("tensorflow")
before = set(sys.modules)
import tuning
tuning.run_search(space={tiny_space!r}, results_dir={str(tmp_path)!r}, recycle_mb=0)
print(json.dumps(sorted(m for m in set(sys.modules) - before)))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    new = json.loads(out.stdout.strip().splitlines()[-1])
    ours = [m for m in new if m.split(".")[0] in ("tuning", "resnet", "search_spaces")]
    assert ours == [], ours
    assert not {"keras_tuner", "optuna", "matplotlib.pyplot", "sklearn.datasets"} & set(new)

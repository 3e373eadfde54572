"""The run lock: an OS lock that the kernel releases when its holder dies, whatever the way."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tuning.errors import UsageError
from tuning.run import lock
from tuning.run.folder import RunFolder

HOLD = textwrap.dedent("""
    import os, pathlib, subprocess, sys, time
    from tuning.run.folder import RunFolder
    run_dir = pathlib.Path(sys.argv[1])
    with RunFolder(run_dir).lock() as fd:
        if sys.argv[2] == "child":  # a trial process inheriting the lock, as the search starts them
            import ctypes, signal
            def die_with_parent():
                ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(fd,),
                             preexec_fn=die_with_parent)
        print("locked", flush=True)
        time.sleep(60)
""")


def holder(run_dir, mode="alone"):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), mode], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.stdout.readline().strip() == "locked"
    return proc


def is_free(run_dir) -> bool:
    try:
        RunFolder(run_dir).check_lock()
    except UsageError:
        return False
    return True


def test_a_live_holder_is_refused_at_once_and_named(tmp_path):
    run_dir = tmp_path / "run"
    proc = holder(run_dir)
    try:
        t0 = time.monotonic()
        with pytest.raises(UsageError, match=f"in use by process {proc.pid} .*wait for it to finish"):
            with RunFolder(run_dir).lock():
                pass
        assert time.monotonic() - t0 < 2
        with pytest.raises(UsageError, match=str(proc.pid)):
            RunFolder(run_dir).check_lock()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["alone", "child"])
def test_kill_9_then_lock_at_once(tmp_path, mode):
    """kill -9 of the holder, then the lock at once: it is free (after the inherited child dies
    with its parent), even while the holder is an unreaped zombie."""
    run_dir = tmp_path / "run"
    proc = holder(run_dir, mode)
    os.kill(proc.pid, signal.SIGKILL)
    time.sleep(0.2)  # not reaped: a zombie that still answers kill(pid, 0)
    os.kill(proc.pid, 0)
    t0 = time.monotonic()
    with RunFolder(run_dir).lock():
        assert json.loads((run_dir / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert time.monotonic() - t0 < lock.DYING_WAIT
    proc.wait()


def test_inherited_lock_is_held_while_the_child_lives(tmp_path, monkeypatch):
    """A trial process that outlives its supervisor (no death signal) still holds the folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = os.open(run_dir / lock.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": 999999, "host": socket.gethostname(), "command": "gone"}).encode())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(fd,))
    os.close(fd)  # the "supervisor" is gone; its child keeps the lock
    monkeypatch.setattr(lock, "DYING_WAIT", 0.5)
    try:
        with pytest.raises(UsageError, match="in use by process 999999"):
            RunFolder(run_dir).check_lock()
    finally:
        child.kill()
        child.wait()
    assert is_free(run_dir)


def test_release_leaves_no_name_and_an_old_pid_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    with RunFolder(run_dir).lock() as fd:
        assert isinstance(fd, int)
        assert not is_free(run_dir)  # flock: another open file description conflicts, even in this process
    assert not run_dir.exists()  # created for nothing: removed again
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    # A lock file of an older version (no OS lock) naming a process that is gone: taken over.
    (run_dir / lock.LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))
    with RunFolder(run_dir).lock():
        pass
    assert (run_dir / lock.LOCK_NAME).read_text() == "" and (run_dir / "run.json").exists()


def test_another_hosts_lock_is_refused_naming_the_host(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / lock.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "gpu-node-7", "command": "search"}))
    with pytest.raises(UsageError, match=r"on gpu-node-7 \(if it is gone, remove .*\.lock\)"):
        with RunFolder(run_dir).lock():
            pass
    assert json.loads((run_dir / lock.LOCK_NAME).read_text())["host"] == "gpu-node-7"

"""A fork server: trial processes that start in a fraction of a second instead of 3-4.

Importing TensorFlow takes about 3 s of CPU, and every fresh trial process (each hand-over,
each worker's restart) paid it again. A `ForkServer` is a process that imports TensorFlow and
Keras once (no device or runtime is set up: that happens in each child) and then forks a child
for each ``python -m SERVER_MODULE ARGS`` it is asked for. The child gets its standard streams, the
run's lock and its environment from the asker (file descriptors travel over a Unix socket) and
runs the module as ``python -m`` would; the fork server reports its exit status. `ForkedPopen`
looks like a `subprocess.Popen` to its caller (`tuning.processes.ChildProcess`).

A fork shares the parent's memory until either writes to it, so a fork costs no start-up CPU
and little memory. It is used only where forking is safe: the TensorFlow backend without XLA,
on a machine without an NVIDIA GPU (CUDA must not see a fork once started; there a trial
process's standby does the job instead). Whatever goes wrong with the fork server, a child is
started the usual way instead (`subprocess`).

Lifetimes: the fork server dies with the process that started it (``PR_SET_PDEATHSIG``), and
each child with the fork server, so a ``kill -9`` of the search takes every process with it, as
it does without a fork server. When its asker closes the socket, the fork server waits for the
children it has and exits.

A leaf module: it imports nothing of this package but `tuning.processes` (and what it preloads).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from ..runtime import preload_tensorflow
from .child import die_with_parent, python_module
from .system import nvidia_present, running

SERVER_MODULE = "tuning.processes.forkserver"
DISABLE_ENV = "TUNING_FORKSERVER"  # "0": never use a fork server
MAX_MESSAGE = 1 << 20
# What a trial process imports besides TensorFlow and Keras (tests/test_forkserver.py checks that
# this package's modules are all here).
PRELOAD = ("keras_tuner", "optuna", "sklearn.datasets", "search_spaces", "resnet", "tuning.search.trial_process",
           "tuning.engine.hypermodel", "tuning.engine.tuner", "tuning.engine.algorithms", "tuning.engine.callbacks",
           "tuning.engine.kt_internals", "tuning.observe.tensorboard")
READY_TIMEOUT = 120.0  # s for the fork server's imports


class ForkServerGone(OSError):
    """The fork server cannot start a child (it is not running, or it died). An OSError, as
    subprocess raises when it cannot start one."""


class ForkServer:
    """The asking side: starts the fork server and asks it for children.

    Args:
        env: the fork server's environment (its children get their own, per request).
        preload: ``"tensorflow"`` (TensorFlow and Keras, quietly, and what a trial process
            imports), or ``""`` (nothing: for tests).
        label: shown on its command line (``ps``): the run folder it serves.
    """

    def __init__(self, env: dict, preload: str = "tensorflow", label: str = ""):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                python_module(SERVER_MODULE, [str(theirs.fileno()), preload, *([label] if label else [])]), env=env,
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        finally:
            theirs.close()
        self.sock = ours
        self._asking = threading.Lock()      # one request at a time
        self._changed = threading.Condition()
        self._ready = False
        self._gone = False
        self._replies: list[dict] = []
        self._exits: dict[int, int] = {}     # pid -> exit status (as subprocess: -N for signal N)
        self._running: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True, name="forkserver-reader")
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._gone

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                with self._changed:
                    if "exit" in message:
                        self._exits[message["exit"]] = message["status"]
                        self._running.discard(message["exit"])
                    elif message.get("ready"):
                        self._ready = True
                    else:
                        if "pid" in message:  # an earlier child's status under the same pid is stale
                            self._exits.pop(message["pid"], None)
                            self._running.add(message["pid"])
                        self._replies.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass
        with self._changed:
            self._gone = True
            self._changed.notify_all()
        # Its children die with it (PR_SET_PDEATHSIG); their statuses are lost with it, so
        # wait until each is gone and call it killed.
        for pid in list(self._running):
            deadline = time.monotonic() + 10.0
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with self._changed:
                self._exits.setdefault(pid, -signal.SIGKILL)
                self._changed.notify_all()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Whether it has finished its imports (waiting up to `timeout` s for it)."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._gone, timeout)
            return self._ready and not self._gone

    def popen(self, cmd: Sequence[str], env: dict, *, stdin: bool, merge_stderr: bool,
              pass_fds: Sequence[int] = ()) -> ForkedPopen:
        """Start ``cmd`` (``[python, "-m", module, *args]`` or ``[python, "-c", code]``) as a fork.

        Raises ForkServerGone if it cannot.
        """
        if len(cmd) < 3 or cmd[1] not in ("-m", "-c"):
            raise ValueError(f"a fork server runs 'python -m SERVER_MODULE' or 'python -c CODE', not {cmd!r}")
        if not self.wait_ready():
            raise ForkServerGone("the fork server is not running")
        pipes: list[int] = []
        try:
            in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), -1)
            pipes += [fd for fd in (in_r, in_w) if fd >= 0]
            out_r, out_w = os.pipe()
            err_r, err_w = (out_r, out_w) if merge_stderr else os.pipe()
            pipes += [out_r, out_w] + ([] if merge_stderr else [err_r, err_w])
            request = {"kind": cmd[1], "what": cmd[2], "args": list(cmd[3:]), "env": dict(env), "cwd": os.getcwd()}
            with self._asking:
                with self._changed:
                    self._replies.clear()
                socket.send_fds(self.sock, [json.dumps(request).encode()], [in_r, out_w, err_w, *pass_fds])
                with self._changed:
                    if not self._changed.wait_for(lambda: self._replies or self._gone, 30.0) or not self._replies:
                        raise ForkServerGone("the fork server did not answer")
                    reply = self._replies.pop(0)
                    if "pid" not in reply:
                        raise ForkServerGone(f"the fork server could not fork: {reply.get('error')}")
        except (OSError, ValueError) as e:  # ForkServerGone included
            for fd in pipes:
                os.close(fd)
            if isinstance(e, ForkServerGone):
                raise
            raise ForkServerGone(str(e)) from e
        for fd in {in_r, out_w, err_w}:  # the child's ends
            os.close(fd)
        return ForkedPopen(self, reply["pid"], in_w if stdin else None, out_r, None if merge_stderr else err_r)

    def exit_status(self, pid: int, timeout: float | None) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        """Let it go: it exits once its children have (it kills none)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class ForkedPopen:
    """A child of the fork server, as much of `subprocess.Popen` as `ChildProcess` uses (text
    streams, line-buffered)."""

    def __init__(self, server: ForkServer, pid: int, stdin_fd: int | None, stdout_fd: int, stderr_fd: int | None):
        self.server, self.pid, self.returncode = server, pid, None
        self.stdin = open(stdin_fd, "w", buffering=1) if stdin_fd is not None else None
        self.stdout = open(stdout_fd, errors="replace")
        self.stderr = open(stderr_fd, errors="replace") if stderr_fd is not None else None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_status(self.pid, 0)
            if self.returncode is not None and self.stdin is not None:
                try:
                    self.stdin.close()
                except OSError:
                    pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.server.exit_status(self.pid, timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def start_for(config, env: dict, label: str = "") -> ForkServer | None:
    """A fork server for the trial processes of a search with `config`, or None where forking is
    not safe or not wanted (see the module's docstring; with ``--verbose`` each process imports
    TensorFlow itself, so that its start-up log lines are shown)."""
    if (os.environ.get(DISABLE_ENV) == "0" or not sys.platform.startswith("linux")
            or (config.backend or "tensorflow") != "tensorflow" or config.jit or config.gpus or config.verbose
            or nvidia_present()):
        return None
    try:
        return ForkServer(env, label=label)
    except OSError:
        return None


# ---------------------------------------------------------------- the fork server's side

def _preload(what: str) -> None:
    with contextlib.suppress(ImportError):
        import setproctitle  # noqa: F401 (it finds the command line's memory at import)
    if what != "tensorflow":
        return
    preload_tensorflow()
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    with contextlib.suppress(ImportError):  # the report's plots, at the end of a search
        import matplotlib

        matplotlib.use("Agg")
        import markdown  # noqa: F401
        import matplotlib.pyplot  # noqa: F401


def _send(sock: socket.socket, message: dict) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        pass


def _serve(sock: socket.socket):
    """Answer requests until the asker closes the socket. Returns only in a forked child: its
    request and descriptors."""
    parent = os.getpid()
    while True:
        ready, _, _ = select.select([sock], [], [], 0.05)
        while True:  # reap
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send(sock, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})
        if not ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 64)
        except OSError:
            data, fds = b"", []
        if not data:  # the asker is done: wait for the children there are, then exit
            while True:
                try:
                    os.wait()
                except ChildProcessError:
                    return None
        try:
            request = json.loads(data)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except (OSError, ValueError) as e:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": str(e)})
            continue
        if pid == 0:
            return request, fds, parent
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})


def _become(request: dict, fds: list[int], parent: int) -> None:
    """In a forked child: take the asker's streams, environment and directory, and run."""
    die_with_parent()
    if os.getppid() != parent:  # the fork server died before the line above: die with it
        os._exit(128 + signal.SIGKILL)
    # First: setproctitle finds the memory it writes the title in from the environment as the
    # process started with it.
    _set_title([sys.executable, request["kind"], request["what"], *request["args"]])
    stdin, stdout, stderr = fds[:3]
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in set(fds[:3]):
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if sys.path:  # as python -m puts it there
        sys.path[0] = request["cwd"]
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if request["kind"] == "-c":
        sys.argv = ["-c", *request["args"]]
        exec(compile(request["what"], "<string>", "exec"), {"__name__": "__main__"})
    else:
        import runpy

        sys.argv = [request["what"], *request["args"]]
        # Preloaded as a module: run a fresh copy as __main__, as python -m does (and without
        # runpy's warning that it is imported already).
        sys.modules.pop(request["what"], None)
        runpy.run_module(request["what"], run_name="__main__", alter_sys=True)


def _set_title(cmd: Sequence[str]) -> None:
    """Show the child's own command line (``ps``, /proc/PID/cmdline), not the fork server's."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(" ".join(cmd))


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for its children, which save first
    sock = socket.socket(fileno=int(argv[0]))
    try:
        _preload(argv[1] if len(argv) > 1 else "")
    except Exception as e:  # noqa: BLE001 (the asker starts its children the usual way instead)
        _send(sock, {"failed": f"{type(e).__name__}: {e}"})
        return
    _send(sock, {"ready": True})
    child = _serve(sock)
    if child is None:
        return
    sock.close()
    _become(*child)


if __name__ == "__main__":
    main()

"""Workers: ``python -m tuning.search ... --workers N`` (keras-tuner's chief and N workers on this
host), and a chief or worker started by hand with keras-tuner's variables.

The chief runs the oracle (the Hyperband bookkeeping) as a gRPC server and trains nothing;
each worker asks it for trials, trains them (one GPU each where there are GPUs) and reports
back. They share the results folder. A worker that dies (killed, out of memory) is started
again under the same tuner id, so the chief hands it back its unfinished trial, which resumes
from its last completed epoch.

On several hosts sharing one filesystem, start the same command by hand with keras-tuner's
variables (see the README): ``KERASTUNER_TUNER_ID=chief`` on one host, ``tuner0``, ``tuner1``,
... on the others, all with ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` of the chief.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable

from ..config import SearchConfig
from ..errors import EXIT_FAILED, EXIT_RECYCLED, UsageError
from ..processes.child import ChildProcess, child_env, interrupt_all, python_module
from ..processes.protocol import MODULE, command_args
from ..processes.seat import RESTARTS, Seat, TrialProcess
from ..processes.system import free_port, listening, usable_cpus
from ..run.folder import RunFolder
from ..run.owner import owned_run
from ..runtime import check_keras_tuner, require_gpus


def visible_gpus(gpus: str | None) -> list[str]:
    """GPU indices to hand out, one per worker: ``--gpus``, else what nvidia-smi lists."""
    if gpus:
        return [g.strip() for g in gpus.split(",") if g.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def _named(name: str, cmd: list[str], env: dict, out: Callable[[str], None], lock_fd: int) -> ChildProcess:
    """A chief whose output (stderr too) is printed prefixed with its name."""
    return ChildProcess(cmd, env, _prefixed(name, out), name=name, pass_fds=(lock_fd,))


def _prefixed(name: str, out: Callable[[str], None]) -> Callable[[str], None]:
    return lambda line: out(f"[{name}] {line.rstrip()}")


def _worker_seat(folder: RunFolder, config: SearchConfig, i: int, env: dict, out, lock_fd: int,
                 standbys: bool) -> Seat:
    """Worker i's succession of processes (tuner id ``tuner{i}``, `env`). Its first process imports
    Keras while the chief starts, then waits for `Seat.go` (before loading the data, which the chief
    may still be indexing). It hands over through standbys if `standbys`."""
    name = f"worker{i}"

    def spawn(standby: str | None, continuing: bool) -> TrialProcess:
        return TrialProcess(folder.path, "worker", _prefixed(name, out), lock_fd, standby=standby, env=env, name=name,
                            handover=bool(config.recycle_mb), continuing=continuing)

    return Seat(lambda standby, continuing: spawn("loaded" if standby else None, continuing), config.recycle_mb,
                first=spawn("imported", False), standbys=standbys)


def launch_from_cli(config: SearchConfig, workers: int, out: Callable[[str], None] = print,
                    started: float | None = None) -> int:
    """``--workers N``: check, lock the run folder, write its config, and run chief and workers.
    The run's wall time counts from `started` (`time.time()` when the command started; default: now)."""
    started = started or time.time()
    if workers < 1:
        raise UsageError(f"--workers {workers} is invalid: give at least 1 (or leave it out)")
    if "KERASTUNER_TUNER_ID" in os.environ:
        raise UsageError("--workers starts its own chief and workers; unset KERASTUNER_TUNER_ID")
    if config.gpus:
        require_gpus(config.gpus, visible_gpus(None))
    check_keras_tuner()
    config, space = config.resolve()
    with owned_run(config, space, out) as (folder, lock_fd, resuming, config):
        return launch(folder, config, workers, out, lock_fd, resuming, started)


def _start_chief(folder: RunFolder, env: dict, out, lock_fd: int, resuming: bool,
                 started: float | None = None) -> ChildProcess | int:
    """The chief, once its oracle listens; or its exit status if it stopped first."""
    ip, port = env["KERASTUNER_ORACLE_IP"], int(env["KERASTUNER_ORACLE_PORT"])
    cmd = python_module(MODULE, command_args(folder.path, "chief", resuming=resuming, started=started))
    # The chief only keeps the books: keep it off the GPUs.
    chief = _named("chief", cmd, {**env, "KERASTUNER_TUNER_ID": "chief", "CUDA_VISIBLE_DEVICES": ""}, out, lock_fd)
    deadline = time.time() + 600
    while not listening(ip, port):  # wait for the oracle (or for the chief to refuse bad input)
        if chief.poll() is not None:
            chief.join_output(5)
            return chief.proc.returncode
        if time.time() > deadline:
            chief.proc.kill()
            out("[launcher] the chief did not start its oracle within 10 minutes")
            return EXIT_FAILED
        time.sleep(0.3)
    return chief


def _tend(chief: ChildProcess, seats: list[Seat], out) -> None:
    """Until the chief ends: a worker that handed over goes on in its standby (or a fresh process),
    and one that died is started again (a few times)."""
    while chief.poll() is None:
        for seat in seats:
            seat.prepare_standby()
            rc = seat.poll()
            if rc == EXIT_RECYCLED:  # handed over after growing: not a failure
                seat.hand_over()
            elif rc is not None and rc != 0 and seat.restarts < RESTARTS:
                seat.restarts += 1
                out(f"[launcher] {seat.current.process.name} exited with status {rc}; starting it again "
                    f"({seat.restarts}/{RESTARTS}): its trial is run again from its last completed epoch")
                seat.hand_over()
        if seats and all(s.poll() not in (None, 0) and s.restarts >= RESTARTS for s in seats):
            out("[launcher] every worker keeps failing; stopping the chief")
            chief.proc.terminate()
        time.sleep(0.2)


WORKER_GRACE = 10.0  # s a Ctrl-C'd worker may take to stop once its chief has


def orphaned_worker(chief: ChildProcess | None, grace: float = WORKER_GRACE) -> Callable[[ChildProcess], bool]:
    """For `interrupt_all`: whether to stop waiting for a Ctrl-C'd worker and kill it. A worker
    that was asking its chief something when Ctrl-C came waits for the chief to answer
    (keras-tuner's calls wait for the oracle to be ready) and handles the Ctrl-C only then; once
    the chief has stopped, it never will. Its trial resumes from the last completed epoch."""
    gone_since: list[float] = []

    def give_up(child: ChildProcess) -> bool:
        if child is chief:
            return False
        if chief is None or chief.poll() is not None:
            if not gone_since:
                gone_since.append(time.monotonic())
            return time.monotonic() - gone_since[0] > grace
        return False

    return give_up


def launch(folder: RunFolder, config: SearchConfig, workers: int, out: Callable[[str], None], lock_fd: int,
           resuming: bool, started: float | None = None) -> int:
    """Run the chief and `workers` workers of the search in `folder`; return the chief's exit status.
    The chief counts the run's wall time from `started` (default: when it starts)."""
    ip = os.environ.get("KERASTUNER_ORACLE_IP", "127.0.0.1")
    port = int(os.environ.get("KERASTUNER_ORACLE_PORT") or free_port(ip))
    env = child_env(KERASTUNER_ORACLE_IP=ip, KERASTUNER_ORACLE_PORT=str(port))
    devices = visible_gpus(config.gpus)
    out(f"chief on {ip}:{port}, {workers} worker(s)"
        + (f" on GPU(s) {', '.join(devices[i % len(devices)] for i in range(workers))}" if devices else " on CPU"))
    # Each worker imports Keras while the chief starts. Later a worker hands over to a fresh process
    # as it grows, like a standalone search's trial processes, through a standby started half-way
    # where a core is spare for it: a worker on a GPU leaves its core free while it trains, workers
    # on the CPU may keep every core busy.
    standbys = bool(devices) or usable_cpus() > workers
    seats: list[Seat] = []
    chief: ChildProcess | int | None = None
    try:
        seats += [_worker_seat(folder, config, i, {**env, "KERASTUNER_TUNER_ID": f"tuner{i}",
                                                   **({"CUDA_VISIBLE_DEVICES": devices[i % len(devices)]} if devices
                                                      else {})}, out, lock_fd, standbys)
                  for i in range(workers)]
        chief = _start_chief(folder, env, out, lock_fd, resuming, started)
        if isinstance(chief, int):
            return chief
        for seat in seats:
            seat.go()
        _tend(chief, seats, out)
    except KeyboardInterrupt:  # Ctrl-C to every process (again until it stops), and wait for them to save
        live_chief = chief if isinstance(chief, ChildProcess) else None
        interrupt_all([*([live_chief] if live_chief else []), *(s.current.process for s in seats if not s.waiting)],
                      give_up=orphaned_worker(live_chief))
        raise
    finally:
        for seat in seats:
            if not seat.waiting:
                try:
                    seat.current.process.proc.wait(60)
                except subprocess.TimeoutExpired:
                    seat.current.process.proc.terminate()
            seat.close()
    for p in (chief, *(s.current.process for s in seats)):
        p.join_output(5)
    return chief.proc.returncode


# ----- a chief or worker started by hand with keras-tuner's variables ---------------------------
def oracle_address() -> tuple[str, int]:
    """The chief's address from keras-tuner's variables, for a search started by hand; raises
    `UsageError` where they are incomplete (keras-tuner would fail later, less clearly)."""
    ip, port = os.environ["KERASTUNER_ORACLE_IP"], os.environ.get("KERASTUNER_ORACLE_PORT", "")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"KERASTUNER_ORACLE_PORT={port!r} is not a port number: set it to the chief's port "
                         "(the same on the chief and every worker)")
    if not os.environ.get("KERASTUNER_TUNER_ID"):
        raise UsageError("KERASTUNER_TUNER_ID is not set: set it to chief on the chief's host and to tuner0, "
                         "tuner1, ... on the workers'")
    return ip, int(port)


def wait_for_chief(address: tuple[str, int], log: Callable[[str], None], finished: Callable[[], bool] = lambda: False,
                   every: float = 0.5) -> bool:
    """A worker started by hand: wait until the chief's oracle listens at `address`
    (`oracle_address`) before touching the run folder. The chief checks the folder and writes
    its run.json before it listens, and it would refuse a folder that a worker started first had
    already made. Returns True once the chief listens; False, without waiting, where no chief
    listens and the search has `finished` (a chief started again would only finish it again).
    Raises `UsageError` for an address that does not resolve."""
    ip, port = address
    try:
        if listening(ip, port):
            return True
        if finished():
            return False
        log(f"worker waiting for the chief at {ip}:{port} (started with KERASTUNER_TUNER_ID=chief)")
        while not listening(ip, port):
            if finished():
                return False
            time.sleep(every)
        return True
    except socket.gaierror as e:
        raise UsageError(f"KERASTUNER_ORACLE_IP={ip!r} does not resolve ({e.strerror}): set it to the chief's "
                         "address") from None


def keras_tuner_role() -> str:
    """``standalone``; or ``chief`` / ``worker`` for a search started by hand on several hosts
    with keras-tuner's variables (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``/``_PORT``)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    return "chief" if os.environ.get("KERASTUNER_TUNER_ID") == "chief" else "worker"

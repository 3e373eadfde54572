"""What the operating system says of processes, memory, the machine and the network: the one module
that asks (through psutil, which reads ``/proc`` on Linux and does the same elsewhere)."""

from __future__ import annotations

import os
import platform
import socket

import psutil


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (default: this one), in MB; OSError if it is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error as e:
        raise OSError(f"no memory figures for process {pid}: {e}") from None


def tree_memory_mb(root: int | None = None, pss: bool = False) -> tuple[float, float]:
    """(RSS, PSS) of a process and all its descendants, in MB; the PSS only with `pss` (0
    otherwise). Summed RSS counts a page that processes share (a fork's pages not yet written,
    libraries) once per process; PSS splits it between them, so its sum is what they hold."""
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    rss = proportional = 0.0
    for process in tree:
        try:
            if pss:
                info = process.memory_full_info()
                proportional += getattr(info, "pss", 0) / 2**20
            else:
                info = process.memory_info()
            rss += info.rss / 2**20
        except psutil.Error:  # gone meanwhile
            continue
    return rss, proportional


def available_mb() -> float | None:
    """The kernel's estimate of memory available without swapping, in MB (None where unknown)."""
    try:
        return psutil.virtual_memory().available / 2**20
    except (psutil.Error, OSError):
        return None


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie, dead but not yet reaped by its
    parent, has ended)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name, as the machine names it."""
    try:
        with open("/proc/cpuinfo") as f:  # psutil does not give the model name
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def free_port(ip: str) -> int:
    """A TCP port nobody listens on at `ip` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def listening(ip: str, port: int) -> bool:
    """Whether something accepts TCP connections at `ip`:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0

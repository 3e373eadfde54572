"""What the operating system says (`tuning.processes.system`): processes, memory, the network."""

import os
import socket
import subprocess
import sys
import time

import pytest

from tuning.processes.system import (
    available_mb,
    free_port,
    listening,
    rss_mb,
    running,
    tree_memory_mb,
    usable_cpus,
)


def test_a_zombie_has_ended_and_a_reaped_process_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while running(child.pid):  # it exits; until it is reaped it is a zombie, which counts as ended
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert os.path.exists(f"/proc/{child.pid}")  # still there, unreaped
    child.wait()
    assert not running(child.pid)
    assert running(os.getpid())


def test_a_tree_holds_its_childrens_memory():
    # A child that holds 200 MB of its own (written, so resident) until told to go.
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(200 << 20); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while rss_mb(child.pid) < 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        alone = rss_mb()
        rss, pss = tree_memory_mb(pss=True)
        assert rss >= alone + 200 and pss >= 200
        assert tree_memory_mb()[1] == 0.0
    finally:
        child.communicate(b"")
    with pytest.raises(OSError):
        rss_mb(child.pid)


def test_cpus_memory_and_ports():
    assert 1 <= usable_cpus() <= os.cpu_count()
    assert available_mb() > 0
    port = free_port("127.0.0.1")
    assert not listening("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert listening("127.0.0.1", port)

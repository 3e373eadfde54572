"""The chief's address: keras-tuner's variables, and whether its oracle listens yet."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from .errors import UsageError


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def listening(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


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

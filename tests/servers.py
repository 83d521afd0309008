"""What the tests that start a real server share: a free loopback port, and stopping the server."""

from __future__ import annotations

import socket
import subprocess
from typing import IO


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen, log: IO[str], timeout_s: float) -> None:
    """Terminate a server process (killed if it does not exit within `timeout_s`), then close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()

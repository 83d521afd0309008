"""Run untrusted Python (generated code under test) in a separate process, never in this one.

Every run gets: a fresh temporary working directory, an isolated interpreter (`python -I`), a
minimal environment (no API keys), a wall-clock timeout that kills the whole process group, and
rlimits on CPU time, address space, file size, open files and core dumps. Where bubblewrap
(`bwrap`) works, the process also runs with no network, a read-only filesystem and a private
/tmp. Without bwrap this is resource-limited but *not* a security sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)

_TAIL = 2000


class ExecResult(BaseModel):
    """Outcome of one run."""

    ok: bool
    """Exit status 0 within the time limit."""
    returncode: int | None
    """Exit status (None if killed on timeout)."""
    timed_out: bool = False
    """The wall-clock limit was hit."""
    stdout: str = ""
    """Last characters of standard output."""
    stderr: str = ""
    """Last characters of standard error."""
    sandbox: str = "subprocess"
    """`bwrap` or `subprocess`."""

    def reason(self) -> str:
        """One line saying why the run failed (or `passed`)."""
        if self.ok:
            return "passed"
        if self.timed_out:
            return "timed out"
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {self.returncode}"
        return f"failed: {last[:300]}"


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """True if bubblewrap is installed and can start a process here (user namespaces allowed)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    try:
        proc = subprocess.run(
            [exe, *_bwrap_args(tempfile.gettempdir()), "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if proc.returncode != 0:
        log.info(
            "bwrap is installed but cannot start (%s); running code in a plain subprocess",
            proc.stderr.decode(errors="replace").strip()[:200],
        )
    return proc.returncode == 0


def _bwrap_args(workdir: str) -> list[str]:
    return [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        workdir,
        workdir,
        "--chdir",
        "/tmp",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
    ]


# Limits are set by a tiny bootstrap inside the child, not by `preexec_fn` (unsafe with threads).
_BOOT = """
import resource, runpy, sys
cpu, mem, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def cap(which, value):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
cap(resource.RLIMIT_CPU, cpu)
cap(resource.RLIMIT_AS, mem * 1024 * 1024)
cap(resource.RLIMIT_FSIZE, 16 * 1024 * 1024)
cap(resource.RLIMIT_NOFILE, 256)
cap(resource.RLIMIT_CORE, 0)
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""


def run_python(
    program: str, timeout_s: float = 10.0, memory_mb: int = 1024, use_bwrap: bool | None = None
) -> ExecResult:
    """Run `program` in a fresh interpreter process with limits; return its outcome."""
    sandboxed = bwrap_available() if use_bwrap is None else use_bwrap
    with tempfile.TemporaryDirectory(prefix="agentmeta-exec-") as tmp:
        script = Path(tmp) / "program.py"
        script.write_text(program)
        cpu = str(max(1, int(timeout_s) + 1))
        if sandboxed:
            cmd = [
                shutil.which("bwrap") or "bwrap",
                *_bwrap_args(tmp),
                sys.executable,
                "-I",
                "-B",
                "-c",
                _BOOT,
                cpu,
                str(memory_mb),
                str(script),
            ]
        else:
            cmd = [sys.executable, "-I", "-B", "-c", _BOOT, cpu, str(memory_mb), str(script)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
    return ExecResult(
        ok=not timed_out and proc.returncode == 0,
        returncode=None if timed_out else proc.returncode,
        timed_out=timed_out,
        stdout=out.decode(errors="replace")[-_TAIL:],
        stderr=err.decode(errors="replace")[-_TAIL:],
        sandbox="bwrap" if sandboxed else "subprocess",
    )

"""How sandbox workers are launched on this machine: bwrap argv, interpreter, uids, killing.

Internal to `agentmeta.agents.sandbox`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("agentmeta.agents.sandbox")

@lru_cache(maxsize=1)
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _accessible_to_others(path: str) -> bool:
    """True if a process with another uid (no groups) can execute `path` and traverse its parents."""
    p = Path(path)
    try:
        if not os.stat(p).st_mode & 0o001:
            return False
        return all(os.stat(parent).st_mode & 0o001 for parent in p.parents)
    except OSError:
        return False


def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    return [paths["stdlib"], paths["platstdlib"]]


def _site_dirs() -> list[str]:
    """Folders of installed packages (data sets live there) to hide inside the bound Python prefix."""
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    found = {paths["purelib"], paths["platlib"]}
    for pattern in ("/usr/lib/python3*/dist-packages", "/usr/local/lib/python3*/*-packages",
                    "/usr/lib/python3*/site-packages"):
        found.update(glob.glob(pattern))
    return sorted(p for p in found if os.path.isdir(p))


def _interpreter(drop_uid: bool) -> str:
    """The Python binary of the workers: this one, or (plain mode as root) one the sandbox uid can run."""
    exe = os.path.realpath(sys.executable)
    if not drop_uid or (_accessible_to_others(exe) and all(_accessible_to_others(d) for d in _stdlib_dirs())):
        return exe
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (f"/usr/bin/{version}", f"/usr/local/bin/{version}", "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(cand)
        if os.path.exists(real) and _accessible_to_others(real):
            return real
    return ""


def _bwrap_argv(python: str, tmp_mb: int, ro_paths: tuple[str, ...], root: bool) -> list[str]:
    argv = [_bwrap_path() or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if not root:
        argv.append("--unshare-user")
    for top in ("/usr", "/etc"):
        argv += ["--ro-bind", top, top]
    for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
    prefix = os.path.realpath(sys.base_prefix)
    binds = [os.path.dirname(python), *_stdlib_dirs(), *(os.path.realpath(p) for p in ro_paths)]
    if not prefix.startswith("/usr/"):
        binds.insert(0, prefix)
    for src in binds:
        if any(src == m or src.startswith(m.rstrip("/") + "/") for m in made if m != "/"):
            continue
        for parent in reversed(Path(src).parents):
            if str(parent) not in made:
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--ro-bind", src, src]
        made.add(src)
    for site in _site_dirs():
        if any(site.startswith(m.rstrip("/") + "/") for m in made if m != "/"):
            argv += ["--tmpfs", site]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_mb << 20),
             "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp"]
    if root:
        # The worker starts as root only to drop to its own uid; it needs nothing else.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return argv


@lru_cache(maxsize=4)
def bwrap_works(root: bool | None = None) -> bool:
    """True if bubblewrap is installed and can start a sandbox here (user namespaces allowed, ...)."""
    if _bwrap_path() is None:
        return False
    root = os.geteuid() == 0 if root is None else root
    argv = _bwrap_argv(os.path.realpath(sys.executable), 1, (), root)
    try:
        r = subprocess.run([*argv, os.path.realpath(sys.executable), "-I", "-S", "-c", "pass"],
                           capture_output=True, timeout=20, env=_child_env("/tmp"))
    except (OSError, subprocess.TimeoutExpired):
        return False
    if r.returncode != 0:
        log.warning("bwrap is installed but cannot start a sandbox (%s); using plain subprocesses",
                    r.stderr.decode(errors="replace").strip()[:300])
    return r.returncode == 0


def _child_env(tmp: str) -> dict[str, str]:
    """The whole environment of a worker: nothing inherited, so no keys, tokens or settings leak."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2"}


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue  # a zombie waits for its parent to reap it; it holds nothing
            pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


def _user_task_count(uid: int) -> int:
    """Threads of all processes of `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for pid in _uid_processes(uid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/task"))
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` with one kill(-1) run as that uid (needs root)."""
    kill = shutil.which("kill", path="/usr/bin:/bin")
    for _ in range(10):
        if kill is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([kill, "-9", "-1"], user=uid, group=uid, extra_groups=[], env={},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        left = _uid_processes(uid)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    log.warning("processes of sandbox uid %d survived 10 kill rounds", uid)

"""How sandbox workers are launched here (bwrap or unshare argv, the mount plan both share, the
interpreter, the uid, the environment), the probes that find out what works, and how a worker's
processes are found and killed. Internal to `agentmeta.sandbox`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    pass

log = logging.getLogger("agentmeta.sandbox")

ErrorKind = Literal["timeout", "memory", "output", "exception", "invalid", "crash", "stall", "killed"]
"""`stall` (a model call outlived `model_call_seconds`) and `killed` (the worker was killed from
outside the job) are the machinery's failures: `Sandbox` raises them as infrastructure errors."""
PARENT_ONLY_KINDS = frozenset({"stall", "killed"})
"""Error kinds only the parent can observe; a result message from the worker claiming one is invalid."""
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
"""Signals an operator or the host's OOM killer sends; a worker dying of one is classed `killed`
unless the job itself did something that could send it (see `_Job.note`)."""
Isolation = Literal["bwrap", "unshare", "none"]
LLMCallback = Callable[[dict[str, Any]], dict[str, Any]]

WORKER_SOURCE = "\n\n".join(
    Path(__file__).with_name(name).read_text() for name in ("reset.py", "worker.py")
)
"""The worker program: what one job could leave for the next (`reset.py`), then the worker."""
_UID_RANGE = (2_000_000, 2_000_000_000)
"""Sandbox uids are drawn at random from this range (root only), one per worker."""


@lru_cache(maxsize=1)
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@lru_cache(maxsize=1)
def _unshare_path() -> str | None:
    return shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin") or shutil.which("unshare")


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
    for pattern in (
        "/usr/lib/python3*/dist-packages",
        "/usr/local/lib/python3*/*-packages",
        "/usr/lib/python3*/site-packages",
    ):
        found.update(glob.glob(pattern))
    return sorted(p for p in found if os.path.isdir(p))


def _interpreter(drop_uid: bool) -> str:
    """The Python binary of the workers: this one, or (plain mode as root) one the sandbox uid can run."""
    exe = os.path.realpath(sys.executable)
    if not drop_uid or (_accessible_to_others(exe) and all(_accessible_to_others(d) for d in _stdlib_dirs())):
        return exe
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (
        f"/usr/bin/{version}",
        f"/usr/local/bin/{version}",
        "/usr/bin/python3",
        "/usr/local/bin/python3",
    ):
        real = os.path.realpath(cand)
        if os.path.exists(real) and _accessible_to_others(real):
            return real
    return ""


def _fs_plan(python: str, ro_paths: tuple[str, ...]) -> list[list[str]]:
    """The read-only tree both bwrap and unshare build: /usr, /etc, the top-level lib/bin links,
    the Python prefix (its site-packages hidden) and `ro_paths`, each at its own path. /proc, /dev
    and /tmp come on top. Entries: ["bind", path], ["symlink", target, path], ["dir", path] (0755,
    the parents of a bind) and ["tmpfs", path] (an empty folder over one of the bound tree)."""
    plan: list[list[str]] = [["bind", "/usr"], ["bind", "/etc"]]
    for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(top):
            plan.append(["symlink", os.readlink(top), top])
        elif os.path.isdir(top):
            plan.append(["bind", top])
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
                plan.append(["dir", str(parent)])
                made.add(str(parent))
        plan.append(["bind", src])
        made.add(src)
    for site in _site_dirs():
        if any(site.startswith(m.rstrip("/") + "/") for m in made if m != "/"):
            plan.append(["tmpfs", site])
    return plan


def _bwrap_argv(python: str, tmp_mb: int, ro_paths: tuple[str, ...], root: bool) -> list[str]:
    argv = [
        _bwrap_path() or "bwrap",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]
    if not root:
        argv.append("--unshare-user")
    for op in _fs_plan(python, ro_paths):
        if op[0] == "bind":
            argv += ["--ro-bind", op[1], op[1]]
        elif op[0] == "symlink":
            argv += ["--symlink", op[1], op[2]]
        elif op[0] == "dir":
            argv += ["--perms", "0755", "--dir", op[1]]
        else:
            argv += ["--tmpfs", op[1]]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(tmp_mb << 20),
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
    ]
    if root:
        # The worker starts as root only to drop to its own uid; it needs nothing else.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return argv


def _unshare_argv(root: bool) -> list[str]:
    """New net (loopback only, down), mount, pid, ipc and uts namespaces; a user namespace with
    this user as its root when not root. The worker builds its root and pid 1 itself (see
    `worker.build_root`); `--kill-child` kills that pid 1, and so the namespace, if
    `unshare` dies."""
    argv = [_unshare_path() or "unshare"]
    if not root:
        argv += ["--user", "--map-root-user"]
    return [*argv, "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]


def _namespace_cfg(python: str, tmp_mb: int, ro_paths: tuple[str, ...]) -> dict[str, Any]:
    """What a worker under `unshare` mounts before anything else (see `worker.build_root`)."""
    return {"plan": _fs_plan(python, ro_paths), "tmp_mb": tmp_mb, "base": "/tmp"}


def _random_uid() -> int:
    return secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0]


@lru_cache(maxsize=4)
def bwrap_works(root: bool | None = None) -> bool:
    """True if bubblewrap is installed and can start a sandbox here (user namespaces allowed, ...)."""
    if _bwrap_path() is None:
        return False
    root = os.geteuid() == 0 if root is None else root
    argv = _bwrap_argv(os.path.realpath(sys.executable), 1, (), root)
    try:
        r = subprocess.run(
            [*argv, os.path.realpath(sys.executable), "-I", "-S", "-c", "pass"],
            capture_output=True,
            timeout=20,
            env=_child_env("/tmp"),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if r.returncode != 0:
        log.warning(
            "bwrap is installed but cannot start a sandbox (%s); trying unshare",
            r.stderr.decode(errors="replace").strip()[:300],
        )
    return r.returncode == 0


@lru_cache(maxsize=4)
def unshare_works(root: bool | None = None) -> bool:
    """True if `unshare` can start a real worker here: namespaces, the read-only root, pid 1, the
    capability drop and (as root) the uid drop all work (a probe worker starts and says ready)."""
    if _unshare_path() is None or not sys.platform.startswith("linux"):
        return False
    root = os.geteuid() == 0 if root is None else root
    python = os.path.realpath(sys.executable)
    cfg = {
        "memory_mb": 1024,
        "file_mb": 1,
        "tmp": "/tmp",
        "cpu_hard": 20,
        "uid": _random_uid() if root else None,
        "drop_caps": True,
        "subreaper": True,
        "namespace": _namespace_cfg(python, 1, ()),
    }
    argv = [*_unshare_argv(root), python, "-I", "-S", "-c", WORKER_SOURCE, json.dumps(cfg)]
    try:
        r = subprocess.run(argv, input=b"", capture_output=True, timeout=20, env=_child_env("/tmp"), cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return False
    ok = r.returncode == 0 and b'"op":"ready"' in r.stdout
    if not ok:
        log.warning(
            "unshare cannot start a sandbox here (status %s: %s)",
            r.returncode,
            r.stderr.decode(errors="replace").strip()[-300:],
        )
    return ok


def _child_env(tmp: str) -> dict[str, str]:
    """The whole environment of a worker: nothing inherited, so no keys, tokens or settings leak."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tmp,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
    }


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
        except OSError:
            continue
        if _alive(int(entry)):
            pids.append(int(entry))
    return pids


def _user_task_count(uid: int) -> int:
    """Threads of all processes of `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for pid in _uid_processes(uid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/task"))
    return total


def _alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie holds no resources but its pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


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
                subprocess.run(
                    [kill, "-9", "-1"],
                    user=uid,
                    group=uid,
                    extra_groups=[],
                    env={},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=10,
                )
        left = _uid_processes(uid)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    log.warning("processes of sandbox uid %d survived 10 kill rounds", uid)

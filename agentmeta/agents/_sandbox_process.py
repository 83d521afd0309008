"""Sandbox worker processes: how they are launched here (bwrap or unshare argv, the mount plan
both share, interpreter, uid), the parent's end of their pipes, and how they are killed. Internal to
`agentmeta.agents.sandbox`.
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
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agentmeta.errors import SandboxError

if TYPE_CHECKING:
    from agentmeta.agents.sandbox import Sandbox

log = logging.getLogger("agentmeta.agents.sandbox")

ErrorKind = Literal["timeout", "memory", "output", "exception", "invalid", "crash", "stall", "killed"]
"""`stall` (a model call outlived `model_call_seconds`) and `killed` (the worker was killed from
outside the job) are the machinery's failures: `Sandbox` raises them as infrastructure errors."""
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
"""Signals an operator or the host's OOM killer sends; a worker dying of one is classed `killed`
unless the job itself did something that could send it (see `_Job.note`)."""
Isolation = Literal["bwrap", "unshare", "none"]
LLMCallback = Callable[[dict[str, Any]], dict[str, Any]]

_WORKER_SOURCE = Path(__file__).with_name("_sandbox_worker.py").read_text()
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
    `_sandbox_worker.build_root`); `--kill-child` kills that pid 1, and so the namespace, if
    `unshare` dies."""
    argv = [_unshare_path() or "unshare"]
    if not root:
        argv += ["--user", "--map-root-user"]
    return [*argv, "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]


def _namespace_cfg(python: str, tmp_mb: int, ro_paths: tuple[str, ...]) -> dict[str, Any]:
    """What a worker under `unshare` mounts before anything else (see `_sandbox_worker.build_root`)."""
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
    argv = [*_unshare_argv(root), python, "-I", "-S", "-c", _WORKER_SOURCE, json.dumps(cfg)]
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


# ---------------------------------------------------------------------------------------------
# One worker process


def _oom_kills() -> int:
    """The host's count of OOM-killer kills since boot (/proc/vmstat), or -1 where unknown."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


class _Job:
    """One job's state in the parent: its result, and the clocks of its model calls.

    The wall-clock limit counts the job's *own* time: time during which at least one of its model
    calls is waiting on the parent (queued, batched, decoding) is not counted, so a slow model does
    not turn into the agent's timeout. Each call is limited separately by `model_call_seconds`.
    """

    def __init__(self, llm: LLMCallback | None) -> None:
        self.llm = llm
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.failure: tuple[ErrorKind, str] | None = None
        self.llm_calls = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.pending: dict[int, float] = {}
        self.next_token = 0
        self.wait_since: float | None = None
        self.model_wait = 0.0
        self.oom_before = -1
        self.note: str | None = None
        """The first action of the job that could kill its own worker (os.kill, a subprocess,
        ctypes, ...), as the worker's audit hook reported it; such a death is the job's own."""

    def call_started(self) -> int:
        with self.lock:
            now = time.monotonic()
            if not self.pending:
                self.wait_since = now
            self.next_token += 1
            self.pending[self.next_token] = now
            return self.next_token

    def call_finished(self, token: int) -> None:
        with self.lock:
            self.pending.pop(token, None)
            if not self.pending and self.wait_since is not None:
                self.model_wait += time.monotonic() - self.wait_since
                self.wait_since = None

    def clocks(self) -> tuple[float, float, float]:
        """(own time, time spent waiting on model calls, how long the oldest pending call has waited)."""
        with self.lock:
            now = time.monotonic()
            waiting = self.model_wait + (now - self.wait_since if self.wait_since is not None else 0.0)
            stall = now - min(self.pending.values()) if self.pending else 0.0
            return now - self.started - waiting, waiting, stall


class _Worker:
    """A started worker, its control pipe reader and its stderr drain."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        lim = sandbox.limits
        mode = sandbox.mode
        self.uid = _random_uid() if sandbox.drop_uid else None
        self.tmpdir: str | None = None
        if mode != "none":
            tmp = cwd = "/tmp"
            if mode == "unshare":
                cwd = "/"
        else:
            self.tmpdir = tmp = cwd = tempfile.mkdtemp(prefix="agentmeta-sbx-")
            if self.uid is not None:
                os.chown(tmp, self.uid, self.uid)
        cfg: dict[str, Any] = {
            "memory_mb": lim.memory_mb,
            "file_mb": lim.tmp_mb,
            "tmp": tmp,
            "cpu_hard": lim.cpu_seconds * lim.max_jobs_per_worker + 10,
            "uid": self.uid,
            "unshare_net": mode == "none" and os.geteuid() == 0,
            "subreaper": mode != "bwrap",
        }
        if mode == "unshare":
            cfg["drop_caps"] = True
            cfg["namespace"] = sandbox.namespace_cfg
        # NPROC counts per user: with our own uid the worker's processes alone; otherwise all of
        # the user's, so the limit is what the user has now plus the allowance.
        cfg["nproc"] = (
            lim.max_processes if self.uid is not None else _user_task_count(os.geteuid()) + lim.max_processes
        )
        argv = [*sandbox.launch_prefix, sandbox.python, "-I", "-S", "-c", _WORKER_SOURCE, json.dumps(cfg)]
        self.stderr_tail: deque[bytes] = deque(maxlen=16)
        self.jobs = 0
        self.dead = threading.Event()
        self.killed_for: ErrorKind | None = None
        self._job: _Job | None = None
        self._wlock = threading.Lock()
        self._kill_lock = threading.Lock()
        self._killed = False
        self._ready = threading.Event()
        self.started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_child_env(tmp),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            self._cleanup_tmp()
            raise SandboxError(f"could not start a sandbox worker ({argv[0]}): {e}") from e
        threading.Thread(target=self._drain_stderr, daemon=True, name="sandbox-stderr").start()
        threading.Thread(target=self._read, daemon=True, name="sandbox-reader").start()
        if not self._ready.wait(30) or self.dead.is_set():
            self.kill()
            raise SandboxError("a sandbox worker did not start: " + self.stderr_text()[-1500:])

    # -- pipes ------------------------------------------------------------------------------
    def stderr_text(self) -> str:
        return b"".join(self.stderr_tail).decode(errors="replace")

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(4096):  # type: ignore[attr-defined]
            self.stderr_tail.append(chunk)

    def _send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self._wlock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        cap = 4 * self.sb.limits.max_output_bytes + 65536
        try:
            while True:
                line = self.proc.stdout.readline(cap + 1)
                if not line:
                    break
                if len(line) > cap:
                    self._fail("output", f"the sandboxed code sent a message over {cap} bytes")
                    break
                try:
                    msg = json.loads(line)
                    op = msg["op"]
                except (ValueError, KeyError, TypeError):
                    self._fail("invalid", "the sandboxed code wrote garbage on the control pipe")
                    break
                if op == "ready":
                    self._ready.set()
                elif op == "llm":
                    job = self._job
                    token = job.call_started() if job is not None else 0
                    self.sb._llm_pool.submit(self._serve_llm, job, msg, token)
                elif op == "note":
                    if self._job is not None and self._job.note is None:
                        self._job.note = str(msg.get("what"))[:200]
                elif op == "result" and self._job is not None and not self._job.done.is_set():
                    self._job.result = msg
                    self._job.done.set()
                else:
                    self._fail("invalid", f"unexpected control message {op!r}")
                    break
        finally:
            self.dead.set()
            self._ready.set()
            job = self._job
            if job is not None and not job.done.is_set():
                job.done.set()

    def _fail(self, kind: ErrorKind, message: str) -> None:
        job = self._job
        if job is not None and not job.done.is_set():
            job.failure = (kind, message)
            self.killed_for = kind
            job.done.set()
        self.kill()

    def _serve_llm(self, job: _Job | None, msg: dict[str, Any], token: int) -> None:
        try:
            self._answer_llm(job, msg)
        finally:
            if job is not None:
                job.call_finished(token)

    def _answer_llm(self, job: _Job | None, msg: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"op": "llm_reply", "id": msg.get("id")}
        cap = self.sb.limits.max_llm_calls
        if job is not None:
            with job.lock:
                job.llm_calls += 1
                over = job.llm_calls > cap
        if job is None or job.llm is None:
            reply["error"] = "this sandbox run has no model (llm=None)"
        elif over:
            reply["error"] = f"the job made more than max_llm_calls={cap} model calls"
        else:
            try:
                reply["response"] = job.llm(msg["request"])
            except Exception as e:  # noqa: BLE001 - the candidate sees the failure as LLMError
                reply["error"] = f"{type(e).__name__}: {e}"[:2000]
        with contextlib.suppress(OSError, ValueError):
            self._send(reply)

    # -- jobs -------------------------------------------------------------------------------
    def run(self, job_msg: dict[str, Any], llm: LLMCallback | None, wall_s: float) -> dict[str, Any]:
        """Run one job; returns the worker's result message or a synthesized failure."""
        job = _Job(llm)
        job.oom_before = _oom_kills()
        self._job = job
        self.jobs += 1
        try:
            self._send(job_msg)
        except (OSError, ValueError):
            return self._death_result(job)
        model_s = self.sb.limits.model_call_seconds
        while not job.done.is_set():
            own, waiting, stall = job.clocks()
            if own >= wall_s:
                spent = f" (not counting {waiting:.1f} s waiting on model calls)" if waiting >= 0.05 else ""
                job.failure = ("timeout", f"the job ran past the wall-clock limit of {wall_s:g} s{spent}")
            elif stall >= model_s:
                job.failure = (
                    "stall",
                    f"a model call of the job did not return within model_call_seconds={model_s:g} s "
                    "(the model stalled); the job was stopped",
                )
            if job.failure is not None:
                self.killed_for = job.failure[0]
                self.kill()
                break
            # Wake at the nearest possible deadline; a call starting or ending only moves them later.
            job.done.wait(min(wall_s - own, model_s - stall if stall else wall_s, 0.5))
        if job.failure is not None:
            kind, message = job.failure
            return {"ok": False, "error_kind": kind, "error": message}
        if job.result is None:
            return self._death_result(job)
        return job.result

    def _death_result(self, job: _Job) -> dict[str, Any]:
        """Classify a worker that died in the middle of a job."""
        we_killed = self._killed
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:  # the job closed its pipe but lives on: its own doing
            we_killed = True
            self.kill()
            rc = self.proc.returncode
        time.sleep(0.02)  # let the stderr drain catch the last words
        tail = self.stderr_text()[-1500:]
        # bwrap and the namespace's pid 1 (under unshare) report a worker killed by a signal as 128+sig.
        wrapped = self.sb.mode != "none"
        sig = -rc if rc is not None and rc < 0 else (rc - 128 if wrapped and rc and rc > 128 else 0)
        kind: ErrorKind = "crash"
        if sig == signal.SIGXCPU:
            kind, what = "timeout", f"the job used more than {self.sb.limits.cpu_seconds} s of CPU"
        elif sig == signal.SIGXFSZ:
            kind, what = "output", f"the job wrote a file over {self.sb.limits.tmp_mb} MiB"
        elif "MemoryError" in tail:
            kind, what = "memory", f"the job ran out of its {self.sb.limits.memory_mb} MiB"
        elif (
            sig == signal.SIGKILL and job.oom_before >= 0 and _oom_kills() > job.oom_before and not we_killed
        ):
            kind = "killed"
            what = "the host ran out of memory and its OOM killer killed the sandbox worker (not the job's own limit)"
        elif sig in OUTSIDE_SIGNALS and not we_killed and job.note is None:
            kind = "killed"
            what = f"the sandbox worker was killed from outside the job by {signal.Signals(sig).name}"
        elif sig and job.note is not None:
            what = f"the worker was killed by {signal.Signals(sig).name} after the job called {job.note}"
        elif sig:
            what = f"the worker was killed by {signal.Signals(sig).name}"
        else:
            what = f"the worker exited with status {rc}"
        return {"ok": False, "error_kind": kind, "error": f"{what}; last output: {tail}" if tail else what}

    def kill(self) -> None:
        """Kill the worker and everything it started: its uid, its session, its process tree."""
        with self._kill_lock:
            if not self._killed:
                self._kill()
                self._killed = True

    def _kill(self) -> None:
        if self.uid is not None:
            _kill_uid(self.uid)
        # Kill the tree below the worker (or below bwrap) while its root still holds it together:
        # orphans re-parent to the subreaper worker / the namespace's init, so they stay in the tree.
        seen: set[int] = set()
        for _ in range(20):
            tree = [p for p in _descendants(self.proc.pid) if _alive(p)]
            if not tree:
                break
            seen.update(tree)
            for pid in tree:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        deadline = time.monotonic() + 2
        while any(_alive(p) for p in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.uid is not None:
            _kill_uid(self.uid)
        self.dead.set()
        for stream in (self.proc.stdin,):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

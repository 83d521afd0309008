"""Process isolation for untrusted candidate code, with model calls served by the parent.

Candidate code runs in a separate worker process, never in the campaign's process, in the first of
these isolation modes (`Sandbox.isolation`) that works here:

- **"bwrap"**: bubblewrap (`apt-get install bubblewrap`). New pid, network, ipc and uts namespaces
  (no network at all, not even loopback to the host), a minimal read-only root (/usr, /etc, the
  Python prefix with its site-packages hidden; no home, no working tree, no archive, none of the
  host's /tmp), a private size-capped tmpfs /tmp, fresh /proc and /dev, `--die-with-parent`,
  `--new-session`.
- **"unshare"**: the same without bubblewrap, from util-linux `unshare` (as root; otherwise in a
  user namespace where this user is root, which the kernel must allow). New network, mount, pid,
  ipc and uts namespaces; the worker mounts the same minimal read-only root as bwrap (same plan),
  a private size-capped tmpfs /tmp, a fresh /proc (only the sandbox's processes) and a few /dev
  nodes, pivots into it and runs under a pid 1 of its own whose exit kills everything left in the
  namespace. Before any candidate code it drops every capability (bounding set included) and sets
  no_new_privs; as root it also drops to its own uid. Found to work by a probe run once per
  process (`unshare_works`).
- **"none"**: a plain subprocess in its own session with a private temp dir as cwd. It does not
  contain reads of world-readable files (home directories, the working tree), writes to
  world-writable ones (the host's /tmp), network access when not root, or signals to the user's
  other processes when not root. So it is refused: without bwrap or unshare a `Sandbox` raises
  `SandboxUnavailableError` unless the caller opts in with `allow_unsafe=True` or the environment
  variable AGENTMETA_UNSAFE_SANDBOX=1.

In every mode the worker starts with an empty environment (no API keys, no tokens, no AGENTMETA_*
settings) and sets hard resource limits on itself before running any candidate code: address space
(RLIMIT_AS), CPU seconds, processes (RLIMIT_NPROC), file size, open files, no core dumps. When the
parent runs as root, each worker also drops to a fresh random uid, which makes RLIMIT_NPROC count
only that worker's processes, makes the parent and files of other users unreachable, and lets the
parent kill every process the worker left behind with one `kill(-1)` as that uid. The parent
enforces the wall clock (kill the worker, its session, its process tree and its uid) and the
output cap (a control message over the cap kills the worker). The wall clock counts the job's own
time: while a model call of the job waits on the parent, it stops, so a slow or busy model is not
the job's timeout; a call that waits past `model_call_seconds` means the model stalled, and the
job is stopped with `ModelStallError`. A worker that dies of SIGKILL, SIGTERM, SIGINT, SIGHUP or
SIGQUIT while its job had done nothing that could send one (the worker's audit hook reports
os.kill, subprocesses, exec, fork and ctypes to the parent), or of SIGKILL while the host's OOM
killer struck, was killed from outside: `WorkerKilledError`. Both are infrastructure errors, which
an evaluation retries and does not score; a worker's result message claiming either kind is
treated as invalid (only the parent observes them). A job can still die "of a signal" by routes
the audit hook does not see (`signal.raise_signal`, `signal.pidfd_send_signal`, or `os._exit(137)`
under bwrap or unshare, which report a signal death as status 128+n); evaluation counts a kill that
recurs on every retry of a seeded sample as the agent's, and a result that loses more than a tenth
of its samples to infrastructure errors is incomplete and never selected on. A worker whose parent dies exits
(bwrap: with it; otherwise when its control pipe closes, in the middle of a job too).

Model calls: the worker has no model and no key. Its `llm(prompt, **sampling)` sends the request
over the control pipe; the parent answers through the `llm` callback (normally a `Model`, so calls
from many sandboxes batch and hit the call cache). Scoring happens in the parent on the returned
value only.

Worker reuse and its limits: a warm worker runs jobs one after another, each in fresh module
globals. After each job the worker restores builtins, the recursion limit, the environment and its
working folder, empties its private /tmp, and unloads every module the job imported (a module the
job planted in `sys.modules` or patched after importing it is gone for the next job). A job may not
add an audit hook. An integrity check compares every module loaded before the job with a
fingerprint taken before it: each name a module binds, the code, defaults and closure of each of
its functions, and the attributes of its classes and plain objects. A worker is thrown away after
any job that changed one of them, that failed by a limit, crash or invalid message, that left
threads or processes behind, that changed process-wide hooks (trace/profile hooks, excepthooks,
gc callbacks, signal handlers, sys.meta_path, sys.path), or after `max_jobs_per_worker` jobs.
tests/sandbox/test_sandbox_hostile.py tries each route. Not covered: mutable containers that a
module holds (a job could fill a module's cache dict, say), object state reached only through
them, and the process-wide CPU counter (each job gets `cpu_seconds` more on its soft limit; the
hard limit covers all jobs of the worker). Use `reuse=False` (a fresh worker per job, ~70-110 ms)
where no job may influence another at all.

What is not contained in any mode: CPU and memory *bandwidth* (a job can slow its neighbours until
it hits its limits), what the read-only root shows (/usr, /etc, the Python install: world-readable
system files), kernel bugs reachable through system calls (there is no seccomp filter), and, under
"unshare" when not root, the per-user process count (RLIMIT_NPROC is then "the user's processes at
start plus `max_processes`", as in "none").
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, Field

from agentmeta.errors import ModelStallError, SandboxError, SandboxUnavailableError, WorkerKilledError
from agentmeta.sandbox.launch import (
    ErrorKind,
    Isolation,
    LLMCallback,
    _bwrap_argv,
    _interpreter,
    _namespace_cfg,
    _unshare_argv,
    bwrap_works,
    unshare_works,
)
from agentmeta.sandbox.process import _Worker

log = logging.getLogger(__name__)

UNSAFE_ENV = "AGENTMETA_UNSAFE_SANDBOX"
"""Set to 1 to let generated code run unisolated where neither bwrap nor unshare works."""


def unsafe_opt_in() -> bool:
    """True if the environment opts in to unisolated sandboxes (AGENTMETA_UNSAFE_SANDBOX=1)."""
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def available_isolation(root: bool | None = None) -> Isolation:
    """The isolation a default `Sandbox` gets here: "bwrap", "unshare" or "none" (probed once)."""
    root = os.geteuid() == 0 if root is None else root
    if bwrap_works(root):
        return "bwrap"
    return "unshare" if unshare_works(root) else "none"


class SandboxLimits(BaseModel):
    """Resource limits of one sandboxed job (and of the worker process that runs it)."""

    cpu_seconds: int = Field(default=30, ge=1)
    """CPU seconds per job (all threads); past it the worker gets SIGXCPU."""
    memory_mb: int = Field(default=1024, ge=64)
    """Address-space limit of the worker and each of its processes, in MiB."""
    max_processes: int = Field(default=64, ge=4)
    """Processes and threads the worker may have at once (RLIMIT_NPROC)."""
    max_output_bytes: int = Field(default=1_000_000, ge=1024)
    """Cap on printed output and on the size of the returned value."""
    wall_seconds: float = Field(default=60.0, gt=0)
    """Wall-clock limit per job, enforced by the parent (kills the worker). It counts the job's own
    time only: while one of its model calls is waiting on the parent, the clock stops."""
    model_call_seconds: float = Field(default=600.0, gt=0)
    """Longest a single model call of a job may wait on the parent; past it the model is taken to
    have stalled: the job is stopped and `ModelStallError` (an infrastructure error) is raised."""
    tmp_mb: int = Field(default=64, ge=1)
    """Size of the private /tmp (bwrap) and the largest file a job may write."""
    max_llm_calls: int = Field(default=256, ge=0)
    """Model calls one job may make; later calls raise LLMError in the code (bounds the cost)."""
    max_jobs_per_worker: int = Field(default=200, ge=1)
    """A reused worker is replaced after this many jobs."""


class SandboxResult(BaseModel):
    """What one sandboxed call returned."""

    ok: bool
    """True if the entry function returned a JSON-able value within every limit."""
    value: Any = None
    """The returned value (JSON types only); None when not ok."""
    error: str | None = None
    """What went wrong: the candidate's traceback or the limit that was hit."""
    error_kind: ErrorKind | None = None
    """timeout, memory, output, exception (raised by the code), invalid (bad value/message) or crash."""
    stdout: str = ""
    """What the code printed, up to the output cap."""
    stderr: str = ""
    """What the code wrote to sys.stderr, up to the output cap."""
    llm_calls: int = 0
    """Model calls the code made."""
    wall_s: float = 0.0
    """Wall time of the job as seen by the parent."""


class CodeResult(BaseModel):
    """What running a plain Python snippet printed and how it ended."""

    ok: bool
    """True if the snippet ran to the end (or exited with status 0)."""
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    """0, the sys.exit status, or None when it was killed or raised."""
    error: str | None = None
    error_kind: ErrorKind | None = None
    wall_s: float = 0.0


def llm_from_model(model: Any) -> LLMCallback:
    """Wrap a `Model` as the parent-side `llm` callback: request fields in, response fields out."""
    from agentmeta.models.base import Model

    def call(request: dict[str, Any]) -> dict[str, Any]:
        # validated like any caller's request: a bad field or value is a one-line ModelRequestError
        resp = model.generate(Model._request(request.pop("messages", []), request))
        return resp.model_dump(mode="json")

    return call


# ---------------------------------------------------------------------------------------------
# The public front


class Sandbox:
    """Runs untrusted code in warm, isolated worker processes; thread-safe.

    Isolation (see the module docstring): bubblewrap when it works here, else `unshare`
    namespaces, else none, which is refused (`SandboxUnavailableError`) unless `allow_unsafe=True`
    or, with `allow_unsafe=None`, the environment sets AGENTMETA_UNSAFE_SANDBOX=1.
    `use_bwrap` / `use_unshare`: None uses the mode when it works, False skips it, True requires it
    (`SandboxError` where it does not work). `pool_size` workers at most run at once (callers beyond
    wait); `reuse=False` starts a fresh worker per job. `ro_paths` are extra folders made visible
    (read-only) inside the sandbox (bwrap and unshare).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        use_bwrap: bool | None = None,
        use_unshare: bool | None = None,
        allow_unsafe: bool | None = None,
        pool_size: int = 4,
        reuse: bool = True,
        ro_paths: tuple[str, ...] = (),
    ) -> None:
        self.limits = limits or SandboxLimits()
        root = os.geteuid() == 0
        self.mode = self._choose_mode(root, use_bwrap, use_unshare, allow_unsafe)
        self.use_bwrap = self.mode == "bwrap"
        self.python = os.path.realpath(sys.executable) if self.mode != "none" else _interpreter(root)
        self.drop_uid = root and bool(self.python)
        if not self.python:
            self.python = os.path.realpath(sys.executable)
            log.warning("no Python binary usable by an unprivileged uid; sandbox workers run as root")
        self.launch_prefix: list[str] = []
        self.namespace_cfg: dict[str, Any] | None = None
        if self.mode == "bwrap":
            self.launch_prefix = _bwrap_argv(self.python, self.limits.tmp_mb, ro_paths, root)
        elif self.mode == "unshare":
            self.launch_prefix = _unshare_argv(root)
            self.namespace_cfg = _namespace_cfg(self.python, self.limits.tmp_mb, ro_paths)
        self.pool_size = pool_size
        self.reuse = reuse
        self._idle: list[_Worker] = []
        self._live = 0
        self._cv = threading.Condition()
        self._closed = False
        self._llm_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sandbox-llm")
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawn")
        self.workers_started = 0
        self.busy: set[_Worker] = set()
        """Workers running a job now."""

    @staticmethod
    def _choose_mode(
        root: bool, use_bwrap: bool | None, use_unshare: bool | None, allow_unsafe: bool | None
    ) -> Isolation:
        if use_bwrap and use_unshare:
            raise SandboxError("use_bwrap=True and use_unshare=True: choose one")
        if use_bwrap or (use_bwrap is None and not use_unshare):
            if bwrap_works(root):
                return "bwrap"
            if use_bwrap:
                raise SandboxError(
                    "use_bwrap=True but bubblewrap cannot start a sandbox here; "
                    "install it (apt-get install bubblewrap) or pass use_bwrap=None"
                )
        if use_unshare is not False:
            if unshare_works(root):
                return "unshare"
            if use_unshare:
                raise SandboxError(
                    "use_unshare=True but unshare cannot create the sandbox's namespaces here "
                    "(see the log); install bubblewrap (apt-get install bubblewrap) or pass use_unshare=None"
                )
        if not (unsafe_opt_in() if allow_unsafe is None else allow_unsafe):
            raise SandboxUnavailableError(
                "refusing to run generated code without isolation: bubblewrap is not installed or "
                "cannot start and unshare cannot create namespaces here; install bubblewrap "
                f"(apt-get install bubblewrap), or opt in to unisolated runs with --unsafe-sandbox or {UNSAFE_ENV}=1 "
                "(Sandbox(allow_unsafe=True)) at your own risk"
            )
        log.warning(
            "UNSAFE sandbox (%s opt-in): generated code runs in a plain subprocess that %s; "
            "install bubblewrap (apt-get install bubblewrap)",
            UNSAFE_ENV if allow_unsafe is None else "allow_unsafe",
            "can read world-readable files and write world-writable ones (the host's /tmp)"
            if root
            else "runs as you: it can read and write your files, use the network and signal your processes",
        )
        return "none"

    @property
    def isolation(self) -> Isolation:
        """The isolation mode of this sandbox: "bwrap", "unshare" or "none" (see the module docstring)."""
        return self.mode

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm(self, n: int | None = None) -> None:
        """Start up to `n` (default `pool_size`) idle workers now, so the first jobs start fast."""
        n = min(n or self.pool_size, self.pool_size)
        with self._cv:
            want = max(0, min(n - len(self._idle), self.pool_size - self._live))
            self._live += want
        started = list(self._llm_pool.map(lambda _: self._spawn_or_none(), range(want)))
        with self._cv:
            for w in started:
                if w is None:
                    self._live -= 1
                else:
                    self._idle.append(w)
            self._cv.notify_all()

    def _spawn_or_none(self) -> _Worker | None:
        try:
            return self._spawn()
        except SandboxError as e:
            log.warning("%s", e)
            return None

    def _spawn(self) -> _Worker:
        # Workers are started from one long-lived thread: bwrap's --die-with-parent and unshare's
        # --kill-child use the parent-death signal, which Linux sends when the *thread* that forked
        # the process exits. Started from a caller's thread (an evaluation's thread pool), an idle
        # worker would be killed when that pool shuts down, and the next job on it would "crash".
        w = self._spawner.submit(_Worker, self).result()
        self.workers_started += 1
        return w

    def _acquire(self) -> _Worker:
        with self._cv:
            while True:
                if self._closed:
                    raise SandboxError("the sandbox is closed")
                while self._idle:
                    w = self._idle.pop()
                    if not w.dead.is_set():
                        return w
                    self._live -= 1
                if self._live < self.pool_size:
                    self._live += 1
                    break
                self._cv.wait()
        try:
            return self._spawn()
        except BaseException:
            with self._cv:
                self._live -= 1
                self._cv.notify()
            raise

    def _release(self, w: _Worker, clean: bool) -> None:
        keep = (
            clean
            and self.reuse
            and not self._closed
            and not w.dead.is_set()
            and w.jobs < self.limits.max_jobs_per_worker
        )
        if not keep:
            w.kill()
        with self._cv:
            if keep:
                self._idle.append(w)
            else:
                self._live -= 1
            self._cv.notify()

    def _job(
        self, job: dict[str, Any], llm: LLMCallback | Any | None, timeout: float | None
    ) -> tuple[dict[str, Any], float]:
        if llm is not None and not callable(llm):
            llm = llm_from_model(llm)
        job = {
            "op": "run",
            "cpu_seconds": self.limits.cpu_seconds,
            "max_output": self.limits.max_output_bytes,
            **job,
        }
        w = self._acquire()
        start = time.perf_counter()
        clean = False
        self.busy.add(w)
        try:
            res = w.run(job, llm, timeout or self.limits.wall_seconds)
            clean = bool(res.get("ok") or res.get("error_kind") == "exception") and not res.get("dirty")
        finally:
            self.busy.discard(w)
            wall = time.perf_counter() - start
            self._release(w, clean)
        if res.get("dirty"):
            log.info("sandbox job left %s behind; its worker was replaced", " and ".join(res["dirty"]))
        if res.get("error_kind") == "stall":
            raise ModelStallError(res.get("error") or "a model call stalled")
        if res.get("error_kind") == "killed":
            raise WorkerKilledError(res.get("error") or "the sandbox worker was killed from outside the job")
        return res, wall

    def run(
        self,
        source: str,
        entry: str = "forward",
        args: list[Any] | tuple[Any, ...] = (),
        llm: LLMCallback | Any | None = None,
        env_preamble: str | None = None,
        timeout: float | None = None,
    ) -> SandboxResult:
        """Exec `source` in fresh globals, call `entry(*args)`, return its (JSON) value.

        `llm` serves the code's `llm(prompt, **sampling)` calls: a `Model` or a callable taking the
        request fields (`GenerateRequest`) as a dict and returning the response fields as a dict.
        `env_preamble` is exec'd first in the same globals (e.g. an `LLMAgentBase` helper).
        Arguments must be JSON types. Never raises for a failure of the code; raises
        `InfrastructureError`s for the machinery's: `SandboxError` (no worker), `WorkerKilledError`
        (killed from outside the job), `ModelStallError` (a model call past `model_call_seconds`).
        """
        try:
            json.dumps(list(args))
        except (TypeError, ValueError) as e:
            raise SandboxError(
                f"sandbox args must be JSON types (str, int, float, bool, None, list, dict); got {e}"
            ) from e
        res, wall = self._job(
            {
                "mode": "call",
                "source": source,
                "entry": entry,
                "args": list(args),
                "preamble": env_preamble or "",
            },
            llm,
            timeout,
        )
        return SandboxResult(
            ok=bool(res.get("ok")),
            value=res.get("value") if res.get("ok") else None,
            error=res.get("error"),
            error_kind=res.get("error_kind"),
            stdout=res.get("stdout", ""),
            stderr=res.get("stderr", ""),
            llm_calls=res.get("llm_calls", 0),
            wall_s=wall,
        )

    def run_code(
        self,
        code: str,
        stdin: str | None = None,
        timeout: float | None = None,
        llm: LLMCallback | Any | None = None,
    ) -> CodeResult:
        """Run a Python snippet as `__main__` and capture what it prints (HumanEval checks, tools)."""
        res, wall = self._job(
            {
                "mode": "exec",
                "source": code,
                "entry": "",
                "args": [],
                "stdin": stdin or "",
                "filename": "<snippet>",
            },
            llm,
            timeout,
        )
        value = res.get("value")
        if not isinstance(value, dict):
            value = {}
        return CodeResult(
            ok=bool(res.get("ok")),
            stdout=res.get("stdout", ""),
            stderr=res.get("stderr", ""),
            exit_code=value.get("exit_code"),
            error=res.get("error"),
            error_kind=res.get("error_kind"),
            wall_s=wall,
        )

    def close(self) -> None:
        """Kill every worker; jobs still running fail."""
        with self._cv:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cv.notify_all()
        for w in idle:
            w.kill()
        self._llm_pool.shutdown(wait=False)
        self._spawner.shutdown(wait=False)


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox with default limits (started on first use)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default


def run_code(
    code: str, stdin: str | None = None, timeout: float | None = None, sandbox: Sandbox | None = None
) -> CodeResult:
    """Run a Python snippet in the (default) sandbox and capture its stdout and stderr."""
    return (sandbox or default_sandbox()).run_code(code, stdin=stdin, timeout=timeout)

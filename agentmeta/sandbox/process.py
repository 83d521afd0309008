"""The parent's end of a sandbox worker: starting it, its control pipe, the clocks of a job's model
calls, and how a job that ended badly is classified (whose failure it was). Internal to
`agentmeta.sandbox`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from agentmeta.errors import SandboxError
from agentmeta.sandbox.launch import (
    OUTSIDE_SIGNALS,
    PARENT_ONLY_KINDS,
    WORKER_SOURCE,
    ErrorKind,
    LLMCallback,
    _alive,
    _child_env,
    _descendants,
    _kill_uid,
    _random_uid,
    _user_task_count,
)

if TYPE_CHECKING:
    from agentmeta.sandbox import Sandbox

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
        argv = [*sandbox.launch_prefix, sandbox.python, "-I", "-S", "-c", WORKER_SOURCE, json.dumps(cfg)]
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
                    if msg.get("error_kind") in PARENT_ONLY_KINDS:  # only the parent observes those
                        msg = {"op": "result", "ok": False, "error_kind": "invalid",
                               "error": f"the job reported the error kind {msg.get('error_kind')!r}, which only "
                               "the parent may give"}  # fmt: skip
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
            sig == signal.SIGKILL
            and job.oom_before >= 0
            and _oom_kills() > job.oom_before
            and not we_killed
            and job.note is None
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

"""The sandbox worker: runs untrusted jobs one after another. Standard library only.

The parent starts this file as `python -I -S -c <this source> <settings json>`, inside bubblewrap
or as a plain subprocess. It must not import agentmeta (the sandbox cannot see the package, and a
worker that imported torch would blow the memory limit).

Start-up, before any untrusted code runs: set the resource limits (hard limits, so they cannot be
raised again), drop to the sandbox uid when started as root, keep the control pipe on private fds
and point fds 0/1 at /dev/null and the stderr pipe.

Protocol: one JSON object per line. Parent -> worker: `{"op": "run", ...}` jobs and
`{"op": "llm_reply", "id", "response" | "error"}`. Worker -> parent: `{"op": "ready"}` once,
`{"op": "llm", "id", "request"}` for each model call of a job and `{"op": "result", ...}` per job.
"""

import builtins
import ctypes
import gc
import io
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback

# The worker's own references, taken before any job runs: a job that monkey-patches json or os
# cannot change how this job's result is encoded or sent (and the patch marks the worker dirty).
_dumps, _loads, _write = json.dumps, json.loads, os.write

CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36


class OutputLimitExceeded(BaseException):
    """Raised into the job when it prints more than its output cap (BaseException: hard to swallow)."""


class LLMError(Exception):
    """A model call made by the job failed in the parent."""


class CappedText(io.TextIOBase):
    """A text stream that keeps at most `budget[0]` characters, shared by stdout and stderr."""

    def __init__(self, budget: list) -> None:
        self.parts: list = []
        self.budget = budget

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if len(s) > self.budget[0]:
            self.parts.append(s[: max(self.budget[0], 0)])
            self.budget[0] = -1
            raise OutputLimitExceeded("output limit exceeded")
        self.budget[0] -= len(s)
        self.parts.append(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)


class Channel:
    """The control pipe: a reader thread routes job messages to a queue and model replies to waiters."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.rfile = os.fdopen(fd_in, "rb", buffering=1 << 16)
        self.wfd = fd_out
        self.wlock = threading.Lock()
        self.jobs: list = []
        self.jobs_cv = threading.Condition()
        self.replies: dict = {}
        self.replies_cv = threading.Condition()
        self.next_id = 0
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, msg: dict) -> None:
        self.send_text(_dumps(msg, separators=(",", ":")))

    def send_text(self, text: str) -> None:
        data = (text + "\n").encode()
        with self.wlock:
            view = memoryview(data)
            while view:
                n = _write(self.wfd, view)
                view = view[n:]

    def _read(self) -> None:
        for line in self.rfile:
            msg = _loads(line)
            if msg.get("op") == "llm_reply":
                with self.replies_cv:
                    self.replies[msg["id"]] = msg
                    self.replies_cv.notify_all()
            else:
                with self.jobs_cv:
                    self.jobs.append(msg)
                    self.jobs_cv.notify_all()
        self.closed = True
        with self.jobs_cv:
            self.jobs_cv.notify_all()
        with self.replies_cv:
            self.replies_cv.notify_all()

    def next_job(self):
        with self.jobs_cv:
            while not self.jobs and not self.closed:
                self.jobs_cv.wait()
            return self.jobs.pop(0) if self.jobs else None

    def call_llm(self, request: dict) -> dict:
        with self.replies_cv:
            self.next_id += 1
            rid = self.next_id
        self.send({"op": "llm", "id": rid, "request": request})
        with self.replies_cv:
            while rid not in self.replies:
                if self.closed:
                    raise LLMError("the parent closed the sandbox channel")
                self.replies_cv.wait()
            reply = self.replies.pop(rid)
        if "error" in reply:
            raise LLMError(reply["error"])
        return reply["response"]


def make_llm(channel: Channel, counter: list):
    def llm(prompt, **sampling) -> dict:
        """Call the model (in the parent). `prompt`: a string or a list of {role, content} messages.

        Keyword arguments are sampling fields (n, temperature, top_p, max_tokens, stop, seed,
        json_schema). Returns the response as a dict: texts, prompt_tokens, completion_tokens, ...
        """
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        request = dict(sampling)
        request["messages"] = messages
        counter[0] += 1
        return channel.call_llm(request)

    return llm


def set_limits(cfg: dict) -> None:
    def lim(which: int, soft: int, hard: int | None = None) -> None:
        resource.setrlimit(which, (soft, soft if hard is None else hard))

    lim(resource.RLIMIT_CORE, 0)
    lim(resource.RLIMIT_AS, cfg["memory_mb"] << 20)
    lim(resource.RLIMIT_FSIZE, cfg["file_mb"] << 20)
    lim(resource.RLIMIT_NOFILE, 256)
    lim(resource.RLIMIT_CPU, cfg["cpu_hard"])
    if cfg.get("nproc"):
        lim(resource.RLIMIT_NPROC, cfg["nproc"])


def isolate(cfg: dict) -> None:
    """Network namespace (plain mode as root), subreaper, privilege drop, then the limits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if cfg.get("unshare_net") and libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    if cfg.get("subreaper"):
        # Orphans of the job's processes are re-parented to this worker, not to init, so the parent
        # can find and kill them by walking the process tree.
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    uid = cfg.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    set_limits(cfg)
    os.chdir(cfg["tmp"])


def child_pids() -> list:
    pids: list = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def describe(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    # Keep the candidate's frames, drop this worker's own.
    lines = [ln for ln in tb if not ln.startswith('  File "<string>"')]
    return "".join(lines)[-4000:]


def runtime_state() -> tuple:
    """Process-wide hooks a job could leave behind to watch or alter the next job in this worker."""
    mods = ("json", "os", "io", "sys", "threading", "builtins", "traceback", "resource")
    return (
        tuple(id(sys.modules.get(m)) for m in mods),
        json.dumps,
        json.loads,
        json.JSONEncoder.encode,
        os.write,
        os.read,
        compile,
        exec,
        sys.gettrace(),
        sys.getprofile(),
        getattr(threading, "_trace_hook", None),
        getattr(threading, "_profile_hook", None),
        tuple(sys.meta_path),
        tuple(sys.path_hooks),
        tuple(sys.path),
        len(gc.callbacks),
        sys.excepthook,
        threading.excepthook,
        signal.getsignal(signal.SIGXCPU),
        signal.getsignal(signal.SIGPIPE),
    )


def no_new_audit_hooks(event: str, args: tuple) -> None:
    # Audit hooks cannot be removed; one left by a job would see every later job's code.
    if event == "sys.addaudithook":
        raise RuntimeError("sys.addaudithook is not allowed in the sandbox")


def run_job(job: dict, channel: Channel) -> dict:
    budget = [job["max_output"]]
    out, err = CappedText(budget), CappedText(budget)
    counter = [0]
    g: dict = {"__name__": "__main__" if job["mode"] == "exec" else "__sandbox__", "__builtins__": builtins}
    g["llm"] = make_llm(channel, counter)
    g["LLMError"] = LLMError
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_now = int(used.ru_utime + used.ru_stime) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu_now + job["cpu_seconds"], hard), hard))
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    sys.stdin = io.StringIO(job.get("stdin") or "")
    threads_before = set(threading.enumerate())
    state_before = runtime_state()
    builtins_before = dict(builtins.__dict__)
    recursion_before = sys.getrecursionlimit()
    res: dict = {"op": "result", "ok": True, "value": None, "error": None, "error_kind": None}
    try:
        if job.get("preamble"):
            exec(compile(job["preamble"], "<preamble>", "exec"), g)
        exec(compile(job["source"], job.get("filename", "<candidate>"), "exec"), g)
        if job["mode"] == "call":
            fn = g.get(job["entry"])
            if not callable(fn):
                raise NameError(f"the code defines no function {job['entry']!r}")
            res["value"] = fn(*job["args"])
        else:
            res["value"] = {"exit_code": 0}
    except OutputLimitExceeded:
        res.update(ok=False, error_kind="output", error=f"printed more than {job['max_output']} characters")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if job["mode"] == "exec":
            res.update(ok=code == 0, value={"exit_code": code})
            if code:
                res.update(error_kind="exception", error=f"SystemExit({e.code!r})")
        else:
            res.update(ok=False, error_kind="exception", error=f"the code called sys.exit({e.code!r})")
    except MemoryError as e:
        res.update(ok=False, error_kind="memory", error="MemoryError: " + describe(e))
    except BaseException as e:  # noqa: BLE001 - every failure of the candidate is reported
        res.update(ok=False, error_kind="exception", error=describe(e))
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
        # Undo the cheap, common ways a job could leak into the next one in this worker.
        builtins.__dict__.clear()
        builtins.__dict__.update(builtins_before)
        sys.setrecursionlimit(recursion_before)
    if budget[0] < 0 and res["ok"]:
        res.update(ok=False, error_kind="output", error=f"printed more than {job['max_output']} characters")
    res["stdout"] = out.getvalue()
    res["stderr"] = err.getvalue()
    res["llm_calls"] = counter[0]
    leftovers = []
    if set(threading.enumerate()) - threads_before:
        leftovers.append("threads")
    if child_pids():
        leftovers.append("processes")
    if runtime_state() != state_before:
        leftovers.append("patched runtime")
    res["dirty"] = leftovers
    return res


def encode(res: dict, cap: int) -> str:
    try:
        text = _dumps(res, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError, MemoryError) as e:
        kind = "memory" if isinstance(e, MemoryError) else "invalid"
        res = dict(
            res,
            ok=False,
            value=None,
            error_kind=kind,
            error=f"the return value is not JSON-serialisable: {type(e).__name__}: {e}"[:2000],
        )
        text = _dumps(res, separators=(",", ":"), default=repr)
    if len(text) > cap:
        res = dict(
            res,
            ok=False,
            value=None,
            error_kind="output",
            stdout=res["stdout"][:1000],
            stderr=res["stderr"][:1000],
            error=f"the result is {len(text)} bytes, over the cap of {cap}",
        )
        text = _dumps(res, separators=(",", ":"), default=repr)
    return text


def main() -> None:
    cfg = json.loads(sys.argv[1])
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray writes to fd 1 go to the stderr pipe, which the parent drains
    os.close(devnull)
    for fd in (ctl_in, ctl_out):
        os.set_inheritable(fd, False)
    isolate(cfg)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.addaudithook(no_new_audit_hooks)
    channel = Channel(ctl_in, ctl_out)
    channel.send({"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "t": time.time()})
    while True:
        job = channel.next_job()
        if job is None or job.get("op") == "exit":
            return
        res = run_job(job, channel)
        channel.send_text(encode(res, job["max_output"]))


if __name__ == "__main__":
    main()

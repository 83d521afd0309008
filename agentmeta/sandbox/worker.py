"""The sandbox worker: runs untrusted jobs one after another. Standard library only.

The parent starts this file as `python -I -S -c <this source> <settings json>`, inside bubblewrap,
under `unshare` (new namespaces, this process their pid 1) or as a plain subprocess. It must not
import agentmeta (the sandbox cannot see the package, and a worker that imported torch would blow
the memory limit): the parent sends `reset.py`'s source ahead of this one, and the import
of it below only serves linters and tests (in the sandbox it fails, and the names are there).

Start-up, before any untrusted code runs. Under `unshare` first: build a minimal read-only root
(the bind mounts the parent planned, a fresh /proc, a few /dev nodes, a size-capped tmpfs /tmp),
pivot into it, then fork: the pid 1 that stays behind only reaps and passes the worker's exit status
on (a pid 1 would ignore SIGXCPU), and its exit tears the whole namespace down. Then, in every
mode: set the resource limits (hard limits, so they cannot be raised again), drop to the sandbox uid
when started as root (under `unshare` also every capability, and no_new_privs), keep the control
pipe on private fds and point fds 0/1 at /dev/null and the stderr pipe. When the parent goes away
(the control pipe reaches EOF) in the middle of a job, the worker exits at once.

Protocol: one JSON object per line. Parent -> worker: `{"op": "run", ...}` jobs and
`{"op": "llm_reply", "id", "response" | "error"}`. Worker -> parent: `{"op": "ready"}` once,
`{"op": "llm", "id", "request"}` for each model call of a job and `{"op": "result", ...}` per job.
"""

import builtins
import ctypes
import io
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback

try:  # noqa: SIM105 - in the package (linters, tests); in the sandbox that source comes first
    from agentmeta.sandbox.reset import (  # noqa: F401
        TMP,
        child_pids,
        clear_dir,
        module_changes,
        module_state,
        runtime_state,
    )
except ImportError:
    pass

# The worker's own references, taken before any job runs: a job that monkey-patches json or os
# cannot change how this job's result is encoded or sent (and the patch marks the worker dirty).
_dumps, _loads, _write = json.dumps, json.loads, os.write

CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# pivot_root(2) by syscall number, where libc has no wrapper (glibc < 2.34).
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217, "i686": 217}
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


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
    """The control pipe: a reader thread routes job messages to a queue and model replies to waiters.

    EOF while a job runs means the parent is gone: the worker exits at once (and under `unshare`
    its pid 1 with it, which kills every process left in the namespace).
    """

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
        self.busy = False
        self.in_job = False
        """True while the job's own code runs (the audit hook reports only its actions)."""
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
        if self.busy:
            os._exit(1)
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
    if cfg.get("drop_caps"):
        drop_capabilities(libc, uid)
    elif uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    set_limits(cfg)
    os.chdir(cfg["tmp"])
    TMP[0] = cfg["tmp"]


def check(ok: bool, what: str) -> None:
    """Raise OSError with errno's text unless a libc call succeeded."""
    if not ok:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def drop_capabilities(libc, uid) -> None:
    """Empty the bounding, ambient, inheritable, permitted and effective sets; set no_new_privs.

    With `uid`, switch to it on the way. Without (a user namespace where only root is mapped) the
    code stays uid 0 of the namespace, with no capability left and none to regain by exec.
    """
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            check(ctypes.get_errno() == 22, f"dropping capability {cap}")  # EINVAL: past the last
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data) == 0, "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS")
    with open("/proc/self/status") as f:
        caps = {k: int(v, 16) for k, _, v in (ln.partition(":") for ln in f) if k.startswith("Cap")}
    if any(caps.get(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")):
        raise OSError(f"capabilities left after dropping them: {caps}")


# ---------------------------------------------------------------------------------------------
# Under `unshare`: the minimal root and the namespace's pid 1


def _mount(libc, src, target, fstype, flags, data=None) -> None:
    enc = lambda v: None if v is None else v.encode()  # noqa: E731
    ok = libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0
    check(ok, f"mount {fstype or src or ''} on {target}")


def _unescape(field: str) -> str:
    """A mount point as /proc/self/mountinfo writes it (octal escapes for space, tab, newline, \\)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _remount_ro(libc, top: str) -> None:
    """Make the bind mount at `top` and every mount below it read-only, nosuid and nodev."""
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(ln.split()[4]) for ln in f]
    for point in points:
        if point == top or point.startswith(top + "/"):
            # Keep noexec (a flag a user namespace may not clear); atime flags are kept by the kernel.
            keep = os.statvfs(point).f_flag & MS_NOEXEC
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep
            _mount(libc, None, point, None, flags)


def _pivot_root(libc, new: str, put_old: str) -> None:
    if hasattr(libc, "pivot_root"):
        check(libc.pivot_root(new.encode(), put_old.encode()) == 0, "pivot_root")
        return
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    check(libc.syscall(ctypes.c_long(number), new.encode(), put_old.encode()) == 0, "pivot_root")


def build_root(ns: dict) -> None:
    """Mount the planned tree on a tmpfs at `ns["base"]` (the host's /tmp, hidden by it) and pivot in.

    The plan holds ["bind", path] (read-only, same path), ["dir", path] (mode 0755),
    ["symlink", target, path] and ["tmpfs", path] (empty, read-only: hides a folder of the bound tree).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    os.umask(0o022)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    new = ns["base"].rstrip("/")
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for op in ns["plan"]:
        kind, path = op[0], op[-1]
        dst = new + path
        if kind == "dir":
            os.makedirs(dst, exist_ok=True)
            os.chmod(dst, 0o755)
        elif kind == "symlink":
            os.symlink(op[1], dst)
        elif kind == "tmpfs":
            _mount(libc, "tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=4k")
        elif kind == "bind":
            if os.path.isdir(path):
                os.makedirs(dst, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                open(dst, "a").close()
            _mount(libc, path, dst, None, MS_BIND | MS_REC)
            _remount_ro(libc, dst)
        else:
            raise ValueError(f"unknown mount plan entry {op!r}")
    os.makedirs(new + "/proc", exist_ok=True)
    _mount(libc, "proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = new + "/dev"
    os.makedirs(dev, exist_ok=True)
    _mount(libc, "tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEV_NODES:
        if os.path.exists("/dev/" + name):
            open(f"{dev}/{name}", "a").close()
            try:
                _mount(libc, "/dev/" + name, f"{dev}/{name}", None, MS_BIND)
            except OSError:
                if name == "null":
                    raise
                os.unlink(f"{dev}/{name}")  # e.g. no tty here: do without it
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", dev + "/fd")
    os.mkdir(dev + "/shm")
    _mount(libc, None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    os.makedirs(new + "/tmp", exist_ok=True)
    size = ns["tmp_mb"] << 20
    _mount(libc, "tmpfs", new + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={size}")
    _mount(libc, None, new, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # pivot_root(".", "."): the old root ends up stacked on the new one; detach it from there.
    os.chdir(new)
    _pivot_root(libc, ".", ".")
    check(libc.umount2(b".", MNT_DETACH) == 0, "umount2 of the old root")
    os.chdir("/")


def become_init(worker: int) -> None:
    """The namespace's pid 1: reap orphans until the worker exits, then exit with its status.

    Its exit makes the kernel kill every process left in the namespace. A pid 1 ignores signals it
    has no handler for (SIGXCPU included), which is why the jobs run in a child, not here.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    try:
        drop_capabilities(libc, None)
    except OSError as e:
        os.write(2, f"sandbox pid 1: {e}\n".encode())
        os._exit(70)
    # Hold none of the worker's pipes: the parent sees EOF when the worker is gone.
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(70)
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def enter_namespace(ns: dict) -> None:
    """Under `unshare`: build the root, fork; the parent stays as pid 1, the child returns."""
    build_root(ns)
    pid = os.fork()
    if pid:
        become_init(pid)


def describe(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    # Keep the candidate's frames, drop this worker's own.
    lines = [ln for ln in tb if not ln.startswith('  File "<string>"')]
    return "".join(lines)[-4000:]


# Events by which a job could kill its own worker (or start something that does). The first one a
# job raises is reported to the parent, which then does not blame a death by signal on the host.
SELF_SIGNAL_EVENTS = (
    "os.kill", "os.killpg", "signal.pthread_kill", "os.system", "os.exec", "os.posix_spawn",
    "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn", "ctypes.", "resource.setrlimit",
    "resource.prlimit",
)  # fmt: skip


def make_audit_hook(channel: "Channel", noted: list):
    """The worker's audit hook: refuses new audit hooks (one left by a job would see every later
    job's code; they cannot be removed) and reports the job's first self-signalling action."""
    send, starts = channel.send, str.startswith

    def hook(event: str, args: tuple) -> None:
        if event == "sys.addaudithook":
            raise RuntimeError("sys.addaudithook is not allowed in the sandbox")
        if noted[0] is None and channel.in_job and starts(event, SELF_SIGNAL_EVENTS):
            noted[0] = event
            send({"op": "note", "what": event})

    return hook


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
    modules_before = dict(sys.modules)
    fingerprint = module_state()
    environ_before = dict(os.environ)
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    sys.stdin = io.StringIO(job.get("stdin") or "")
    threads_before = set(threading.enumerate())
    state_before = runtime_state()

    builtins_before = dict(builtins.__dict__)
    recursion_before = sys.getrecursionlimit()
    res: dict = {"op": "result", "ok": True, "value": None, "error": None, "error_kind": None}
    channel.in_job = True
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
        channel.in_job = False
        sys.stdout, sys.stderr, sys.stdin = saved
        # Undo the cheap, common ways a job could leak into the next one in this worker.
        builtins.__dict__.clear()
        builtins.__dict__.update(builtins_before)
        sys.setrecursionlimit(recursion_before)
        os.environ.clear()
        os.environ.update(environ_before)
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
    patched = module_changes(fingerprint, modules_before)
    if patched:
        leftovers.append("patched modules (" + ", ".join(sorted(set(patched))[:5]) + ")")
    try:
        files_ok = bool(TMP[0])  # never a folder the worker was not given as its own
        if files_ok:
            os.chdir(TMP[0])
            files_ok = clear_dir(TMP[0])
    except OSError:
        files_ok = False
    if not files_ok:
        leftovers.append("files it could not remove")
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
    if cfg.get("namespace"):
        enter_namespace(cfg["namespace"])
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray writes to fd 1 go to the stderr pipe, which the parent drains
    os.close(devnull)
    for fd in (ctl_in, ctl_out):
        os.set_inheritable(fd, False)
    isolate(cfg)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # Modules that rebind names of modules loaded before them when imported again: loaded once
    # here, so a job importing them (dataclasses, inspect, time.strptime...) leaves nothing changed.
    for name in ("importlib", "importlib.util", "_strptime", "dataclasses", "inspect"):
        __import__(name)
    channel = Channel(ctl_in, ctl_out)
    noted: list = [None]
    sys.addaudithook(make_audit_hook(channel, noted))
    channel.send({"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "t": time.time()})
    while True:
        job = channel.next_job()
        if job is None or job.get("op") == "exit":
            return
        noted[0] = None
        channel.busy = True
        res = run_job(job, channel)
        channel.busy = False
        channel.send_text(encode(res, job["max_output"]))


if __name__ == "__main__":
    main()

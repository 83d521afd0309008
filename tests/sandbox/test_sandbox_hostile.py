"""Hostile candidate code: every attack fails its sample with a reason and the parent goes on.

Each test runs under bubblewrap, under `unshare` namespaces (the fallback without bubblewrap) and
under the unisolated plain subprocess (the explicit unsafe opt-in; only where the containment
applies there). Each checks the specific containment, then that the sandbox still serves a job.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

from agentmeta.sandbox import Sandbox, SandboxLimits, bwrap_works, unshare_works

LIMITS = SandboxLimits(
    cpu_seconds=2, memory_mb=256, max_processes=32, max_output_bytes=100_000, wall_seconds=4, tmp_mb=8
)
SECRET = "agentmeta-secret-" + str(random.randrange(10**12))
os.environ["AGENTMETA_TEST_SECRET"] = SECRET  # set before any worker starts
os.environ["HF_TOKEN"] = SECRET


def mode_args(mode: str) -> dict[str, bool]:
    """Sandbox arguments that give exactly this isolation mode."""
    return {"use_bwrap": mode == "bwrap", "use_unshare": mode == "unshare", "allow_unsafe": mode == "none"}


@pytest.fixture(scope="module", params=["bwrap", "unshare", "none"])
def sb(request: pytest.FixtureRequest):
    if request.param == "bwrap" and not bwrap_works():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here")
    if request.param == "unshare" and not unshare_works():
        pytest.skip("unshare cannot create the sandbox's namespaces here")
    box = Sandbox(LIMITS, **mode_args(request.param), pool_size=2)
    assert box.isolation == request.param
    box.warm(1)
    yield box
    box.close()


def needs_uid_isolation(sb: Sandbox) -> None:
    """Skip where the plain fallback runs the code as this test's own user (not root: no uid drop)."""
    if sb.isolation == "none" and not sb.drop_uid:
        pytest.skip("plain subprocess as the same user: files and /proc of this user are reachable")


def still_serves(sb: Sandbox) -> None:
    r = sb.run("def forward(a, b):\n    return a + b\n", "forward", [2, 3])
    assert r.ok and r.value == 5, r


def hostile(sb: Sandbox, body: str, *args: object, bound_s: float = 10.0):
    source = "def forward(*args):\n" + "".join("    " + ln + "\n" for ln in body.strip().splitlines())
    start = time.monotonic()
    r = sb.run(source, "forward", list(args))
    elapsed = time.monotonic() - start
    assert elapsed < bound_s, f"took {elapsed:.1f} s"
    return r


def test_infinite_loop_hits_cpu_limit(sb: Sandbox) -> None:
    r = hostile(sb, "while True:\n    pass")
    assert not r.ok and r.error_kind == "timeout", r
    still_serves(sb)


def test_sleep_forever_hits_wall_clock(sb: Sandbox) -> None:
    r = hostile(sb, "import time\ntime.sleep(1000)", bound_s=LIMITS.wall_seconds + 4)
    assert not r.ok and r.error_kind == "timeout" and "wall-clock" in (r.error or "")
    still_serves(sb)


def _live_sandbox_processes() -> list[int]:
    """Processes (not zombies) whose command line holds the worker's source: workers, their bwrap or
    unshare and pid 1, forks. Only this test's: below this process, or orphans adopted by init (other
    test runs on the machine may have workers of their own)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if (
                    b"The sandbox worker: runs untrusted jobs"
                    not in Path(f"/proc/{pid}/cmdline").read_bytes()
                ):
                    continue
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                if fields[0] != "Z" and (fields[1] == "1" or _descends_from_us(int(pid))):
                    found.append(int(pid))
            except (OSError, IndexError):
                pass
    return found


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        if pid == me:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def test_fork_bomb_is_contained(sb: Sandbox) -> None:
    if sb.isolation == "none" and not sb.drop_uid:
        pytest.skip("plain subprocess as the same user: RLIMIT_NPROC counts all of this user's processes")
    others = set(_live_sandbox_processes())  # other sandboxes of this test process (the default one)
    r = hostile(
        sb,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        bound_s=LIMITS.wall_seconds + 6,
    )
    assert not r.ok and r.error_kind == "timeout", r
    # Left: the idle workers (each with its two bwrap processes, or unshare and pid 1); every fork is gone.
    assert len(set(_live_sandbox_processes()) - others) <= 3 * sb.pool_size
    # RLIMIT_NPROC stops forking well before the machine notices.
    r = hostile(
        sb,
        """
import os, time
pids = []
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    pids.append(pid)
return len(pids)
""",
    )
    # With a per-worker uid the cap is exact; without (not root) it is "the user's tasks at start
    # + max_processes", so the user's other threads coming and going move it a little.
    cap = LIMITS.max_processes if sb.drop_uid else 2 * LIMITS.max_processes
    assert r.ok and 0 < r.value < cap, r
    still_serves(sb)


def test_memory_bomb(sb: Sandbox) -> None:
    r = hostile(sb, "x = bytearray(2 * 1024 ** 3)\nreturn len(x)")
    assert not r.ok and r.error_kind == "memory", r
    r = hostile(sb, "chunks = []\nwhile True:\n    chunks.append(b'x' * 10_000_000)")
    assert not r.ok and r.error_kind == "memory", r
    still_serves(sb)


def test_writes_outside_tmp_fail(sb: Sandbox, tmp_path: Path) -> None:
    needs_uid_isolation(sb)
    outside = tmp_path / "outside"
    outside.mkdir()
    repo_file = Path(__file__).resolve().parents[2] / "pwned.txt"
    targets = [
        str(outside / "pwned.txt"),
        str(repo_file),
        "/etc/pwned.txt",
        os.path.expanduser("~/pwned.txt"),
    ]
    if sb.isolation != "none":  # even a world-writable folder of the host is invisible inside
        outside.chmod(0o777)
        tmp_path.chmod(0o777)
    # /tmp inside is private when isolated (the write works, the host never sees it); without
    # isolation it is the host's, so the job writes its own cwd instead.
    scratch = (
        f"/tmp/agentmeta-pwned-{random.randrange(10**12)}.txt" if sb.isolation != "none" else "inside.txt"
    )
    r = hostile(
        sb,
        """
import os
done = []
for p in args[0]:
    try:
        with open(p, 'w') as f:
            f.write('pwned')
        done.append(p)
    except OSError:
        pass
open(args[1], 'w').write('fine')
return done
""",
        targets,
        scratch,
    )
    assert r.ok and r.value == [], r
    for t in [*targets, scratch]:
        assert not os.path.exists(t), t


def test_network_is_unreachable(sb: Sandbox) -> None:
    if sb.isolation == "none" and os.geteuid() != 0:
        pytest.skip("the plain fallback isolates the network only when run as root")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    r = hostile(
        sb,
        """
import socket
out = []
for host in ('127.0.0.1', '1.1.1.1'):
    try:
        socket.create_connection((host, args[0]), timeout=1).close()
        out.append(host)
    except OSError:
        pass
return out
""",
        port,
    )
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()
    assert r.ok and r.value == [], r


def test_secrets_in_parent_env_are_invisible(sb: Sandbox) -> None:
    needs_uid_isolation(sb)
    r = hostile(
        sb,
        """
import os
seen = [repr(dict(os.environ))]
for pid in os.listdir('/proc'):
    try:
        seen.append(open('/proc/%s/environ' % pid, 'rb').read().decode('latin-1'))
    except OSError:
        pass
print(seen)
return seen
""",
    )
    assert r.ok, r
    assert SECRET not in repr(r.value) and SECRET not in r.stdout
    assert "AGENTMETA_TEST_SECRET" not in repr(r.value)


def test_killing_the_parent_fails(sb: Sandbox) -> None:
    needs_uid_isolation(sb)
    r = hostile(
        sb,
        """
import os, signal
for target in (args[0], os.getppid()):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
os.kill(0, signal.SIGKILL)  # its own process group: the worker dies
""",
        os.getpid(),
    )
    assert not r.ok and r.error_kind == "crash", r
    assert os.getpid()  # still here
    still_serves(sb)


def test_stdout_flood_hits_output_cap(sb: Sandbox) -> None:
    r = hostile(sb, "while True:\n    print('x' * 1000)")
    assert not r.ok and r.error_kind == "output", r
    assert len(r.stdout) <= LIMITS.max_output_bytes
    r = hostile(
        sb,
        "import sys\ntry:\n    while True:\n        sys.stderr.write('y' * 1000)\nexcept BaseException:\n"
        "    pass\nreturn 'swallowed'",
    )
    assert not r.ok and r.error_kind == "output", r
    still_serves(sb)


def test_huge_return_value(sb: Sandbox) -> None:
    r = hostile(sb, "return 'x' * 5_000_000")
    assert not r.ok and r.error_kind == "output" and r.value is None, r
    r = hostile(sb, "return object()")
    assert not r.ok and r.error_kind == "invalid", r
    still_serves(sb)


def test_deep_recursion(sb: Sandbox) -> None:
    r = hostile(sb, "def f(n):\n    return f(n + 1)\nreturn f(0)")
    assert not r.ok and r.error_kind == "exception" and "RecursionError" in (r.error or ""), r
    r = hostile(sb, "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nreturn f(0)")
    assert not r.ok and r.error_kind in ("crash", "exception", "memory", "timeout"), r
    still_serves(sb)


def test_exit_calls(sb: Sandbox) -> None:
    r = hostile(sb, "import sys\nsys.exit(0)")
    assert not r.ok and r.error_kind == "exception" and "sys.exit" in (r.error or ""), r
    r = hostile(sb, "import os\nos._exit(0)")
    assert not r.ok and r.error_kind == "crash", r
    still_serves(sb)


def test_archive_and_checkout_are_unreadable(sb: Sandbox, tmp_path: Path) -> None:
    needs_uid_isolation(sb)
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "answers.json").write_text('{"target": "42"}')
    paths = [str(archive / "answers.json")]
    if sb.isolation != "none":  # the checkout and installed packages are not mounted at all
        paths += [str(Path(__file__).resolve()), os.path.realpath(pytest.__file__)]
    r = hostile(
        sb,
        """
out = []
for p in args[0]:
    try:
        out.append(open(p).read())
    except OSError:
        pass
return out
""",
        paths,
    )
    assert r.ok and r.value == [], r


def _cmdlines_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                pass
    return found


def test_spawned_processes_do_not_outlive_the_job(sb: Sandbox) -> None:
    marker = f"{random.randrange(10**6)}.{random.randrange(10**6)}"
    r = hostile(
        sb,
        """
import os, subprocess
subprocess.Popen(['sleep', args[0]])
if os.fork() == 0:  # a daemon: double fork, new session
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', args[0]])
    os._exit(0)
os.wait()
return 'left behind'
""",
        marker,
    )
    assert r.ok and r.value == "left behind", r
    deadline = time.monotonic() + 3
    while _cmdlines_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cmdlines_with(marker) == []
    still_serves(sb)


def test_jobs_in_a_reused_worker_do_not_share_globals_or_builtins(sb: Sandbox) -> None:
    r1 = sb.run(
        "import builtins\nSTATE = 1\ndef forward():\n    builtins.len = lambda x: 42\n"
        "    return __import__('os').getpid()\n",
        "forward",
    )
    r2 = sb.run(
        "def forward():\n    return [len('abc'), 'STATE' in globals(), __import__('os').getpid()]\n",
        "forward",
    )
    assert r1.ok and r2.ok, (r1, r2)
    assert r2.value[:2] == [3, False]


def test_a_job_cannot_tamper_with_the_next_jobs_result(sb: Sandbox) -> None:
    mark = "def forward():\n    open('mark', 'w').close()\n    return 'mine'\n"
    forge = mark.replace(
        "    return", '    json.dumps = lambda *a, **k: \'{"op": "result", "value": 1}\'\n    return'
    )
    check = "import os\ndef forward():\n    return os.path.exists('mark')\n"
    with Sandbox(LIMITS, **mode_args(sb.isolation), pool_size=1) as one:
        assert one.run(mark, "forward").ok and one.run(check, "forward").value is False  # /tmp emptied
        assert one.workers_started == 1  # ...in the same worker
        first = one.run("import json\n" + forge, "forward")
        assert first.ok and first.value == "mine", first  # its own result is encoded honestly
        nxt = one.run(check, "forward")
        assert nxt.ok and nxt.value is False and one.workers_started == 2  # the patched worker was replaced
    # Audit hooks cannot be removed, so a job may not add one (it would see later jobs' code).
    spy = "import sys\ndef forward():\n    seen = []\n    sys.addaudithook(lambda e, a: seen.append(e))\n"
    spy += "    compile('1', 'x', 'eval')\n    return len(seen)\n"
    hook = sb.run(spy, "forward")
    assert hook.ok and hook.value == 0, hook


# What one job could leave for the next job in the same worker, and what the next job must see.
TAMPER = {
    "patch a stdlib function": ("import re\ndef forward():\n    re.sub = lambda *a, **k: 'HIJACKED'\n",
                                "import re\ndef forward():\n    return re.sub('a', 'b', 'aa')\n", "bb"),
    "swap a function's code": ("import re\ndef forward():\n    re.escape.__code__ = (lambda p: 'HIJACKED').__code__\n",
                               "import re\ndef forward():\n    return re.escape('a')\n", "a"),
    "patch a class method": ("import json\ndef forward():\n    json.JSONDecoder.decode = lambda self, s: 'HIJACKED'\n",
                             "import json\ndef forward():\n    return json.JSONDecoder().decode('1')\n", 1),
    "mutate a module-level object": ("import json\ndef forward():\n    json._default_encoder.indent = 9\n",
                                     "import json\ndef forward():\n    return json.dumps([1])\n", "[1]"),
    "plant a module": ("import sys, types\ndef forward():\n    m = types.ModuleType('fractions')\n"
                       "    m.Fraction = lambda *a: 'HIJACKED'\n    sys.modules['fractions'] = m\n",
                       "def forward():\n    from fractions import Fraction\n    return str(Fraction(1, 2))\n", "1/2"),
    "patch a module it imported": ("import statistics\ndef forward():\n    statistics.mean = lambda x: 'HIJACKED'\n",
                                   "import statistics\ndef forward():\n    return statistics.mean([1, 3])\n", 2),
    "leave a file": ("def forward():\n    open('answers.txt', 'w').write('HIJACKED')\n",
                     "import os\ndef forward():\n    return sorted(os.listdir('.'))\n", []),
    "set the environment": ("import os\ndef forward():\n    os.environ['HINT'] = 'HIJACKED'\n",
                            "import os\ndef forward():\n    return os.environ.get('HINT', '')\n", ""),
    "patch a submodule it imported": ("import json.tool\ndef forward():\n    json.tool.main = lambda: 'HIJACKED'\n",
                                      "def forward():\n    import json.tool\n    return json.tool.main.__name__\n", "main"),
    "change directory": ("import os\ndef forward():\n    os.chdir('/')\n",
                         "import os\ndef forward():\n    return os.listdir('.')\n", []),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(TAMPER))
def test_a_job_cannot_change_what_a_later_job_sees(sb: Sandbox, what: str) -> None:
    """One worker, two jobs: whatever the first changed in modules, builtins, files, environment or
    working folder is undone, or its worker is replaced before the next job."""
    tamper, probe, expected = TAMPER[what]
    with Sandbox(LIMITS, **mode_args(sb.isolation), pool_size=1) as one:
        assert one.run(probe, "forward").value == expected  # the probe's honest answer
        first = one.run(tamper, "forward")
        assert first.ok, first
        after = one.run(probe, "forward")
        assert after.ok and after.value == expected, (what, after)


def test_a_job_cannot_claim_an_infrastructure_failure(sb: Sandbox) -> None:
    """Only the parent observes a stalled model or a kill from outside; a job that writes such an
    error kind into its own result gets an invalid result, not a retry that leaves it unscored."""
    forge = (
        "import sys\ndef forward():\n    f = sys._getframe()\n"
        "    while f is not None and 'res' not in f.f_locals:\n        f = f.f_back\n"
        "    f.f_locals['res'].update(ok=False, error_kind='stall', error='the model stalled')\n    return 1\n"
    )
    r = sb.run(forge, "forward")
    assert not r.ok and r.error_kind == "invalid" and "only the parent" in (r.error or ""), r
    still_serves(sb)

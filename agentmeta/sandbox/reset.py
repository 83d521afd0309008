"""What one sandboxed job could leave behind for the next job in the same worker, and how the
worker undoes it or notices it. Standard library only: the parent sends this source ahead of
`worker.py` as one program (see `launch.WORKER_SOURCE`); the worker imports these
names from here only when linted or tested in the package.
"""

import gc
import json
import os
import signal
import sys
import threading

TMP = [""]
"""The worker's private temp folder (its cwd), set by `isolate` from the parent's settings: emptied
after every job. Empty (outside a started worker): nothing is cleared."""


def child_pids() -> list:
    pids: list = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


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


_PLAIN = (str, bytes, int, float, bool)


def _ident(value) -> tuple:
    """What identifies a module-level value for the integrity check: the object, and for functions
    their code, defaults and closure cells' contents (which a job could swap without rebinding)."""
    if (
        value is None
        or type(value) in _PLAIN
        or (type(value) is tuple and all(type(v) in _PLAIN for v in value))
    ):
        return ("=", value)  # an equal value is the same value (a re-import rebinds equal strings)
    code = getattr(value, "__code__", None)
    if code is None or not isinstance(getattr(value, "__defaults__", ()), (tuple, type(None))):
        return (id(value),)
    cells = getattr(value, "__closure__", None) or ()
    inner = []
    for cell in cells:
        try:
            inner.append(id(cell.cell_contents))
        except ValueError:  # an empty cell
            inner.append(0)
    return (
        id(value),
        id(code),
        id(value.__defaults__),
        id(getattr(value, "__kwdefaults__", None)),
        tuple(inner),
    )


def module_state() -> dict:
    """A fingerprint of every loaded module: each name it binds, and the attributes of the classes
    and plain objects it holds (a job that patches `re.sub`, `json.JSONEncoder.encode`,
    `json._default_encoder.indent` or a function's `__code__` changes it)."""
    state = {}
    for name, mod in list(sys.modules.items()):
        try:
            items = list(vars(mod).items())
        except TypeError:
            state[name] = (id(mod), None)
            continue
        entries = {}
        for key, value in items:
            entries[key] = _ident(value)
            inner = getattr(value, "__dict__", None)
            if isinstance(value, type) or (
                isinstance(inner, dict) and not isinstance(value, type(sys)) and not callable(value)
            ):
                try:  # noqa: SIM105 - the worker keeps its imports to what it needs
                    entries[key] += tuple(sorted((k, id(v)) for k, v in vars(value).items()))
                except TypeError:  # keys that do not sort
                    pass
        state[name] = (id(mod), entries)
    return state


def module_changes(before: dict, modules_before: dict) -> list:
    """Undo what can be undone after a job (modules it imported are unloaded, so a module it
    patched or planted is not there for the next job) and name what cannot (a module that was
    loaded before the job and now binds something else)."""
    for name in [n for n in sys.modules if n not in modules_before]:
        module = sys.modules.pop(name)
        package, _, child = name.rpartition(".")
        parent = modules_before.get(package)
        if parent is not None and getattr(parent, child, None) is module:
            delattr(parent, child)  # the package's attribute would hand the next job this module
    changed = [n for n, m in modules_before.items() if sys.modules.get(n) is not m]
    for name, mod in modules_before.items():
        sys.modules[name] = mod
    after = module_state()
    for name, (mod_id, entries) in before.items():
        now = after.get(name)
        if now is None or now[0] != mod_id:
            changed.append(name)
            continue
        if entries is None:
            continue
        for key, ident in now[1].items():
            old = entries.get(key)
            if old is None:
                if not isinstance(getattr(sys.modules[name], key, None), type(sys)):  # a submodule is fine
                    changed.append(f"{name}.{key}")
            elif old != ident:
                changed.append(f"{name}.{key}")
        changed.extend(f"{name}.{key}" for key in entries if key not in now[1])
    return changed


def clear_dir(path: str) -> bool:
    """Remove everything in `path` (the job's private /tmp); False if something could not be."""
    ok = True
    for entry in os.scandir(path):
        try:
            if entry.is_dir(follow_symlinks=False):
                clear_tree(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            ok = False
    return ok


def clear_tree(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            clear_tree(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)

"""How many threads torch's CPU kernels use in this process.

The default is the number of CPUs this process may run on (its affinity mask: what a container,
`taskset` or a cgroup CPU set gives it), not the machine's core count. Set
`AGENTMETA_TORCH_THREADS` to choose, or `OMP_NUM_THREADS` (Ray sets it to each actor's `num_cpus`,
so every actor on a node keeps to its share). Two processes each running torch with every core
slow each other down many times over; give each process its share instead
(`worker_env(share)` for a child process).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agentmeta.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV = "AGENTMETA_TORCH_THREADS"

_applied: int | None = None
_lock = threading.Lock()


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def torch_threads() -> int:
    """`AGENTMETA_TORCH_THREADS`, else `OMP_NUM_THREADS`, else `available_cpus()`."""
    for name in (ENV, "OMP_NUM_THREADS"):
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number of threads; got {raw!r}") from None
            if n < 1:
                raise ConfigError(f"{name} must be >= 1; got {n}")
            return n
    return available_cpus()


def apply(torch: Any) -> int:
    """Set torch's intra-op threads to `torch_threads()` (once per process, when the first local
    model loads); the number set."""
    global _applied
    with _lock:
        n = torch_threads()
        if _applied != n:
            torch.set_num_threads(n)
            _applied = n
            log.debug("torch uses %d threads", n)
        return n


def worker_env(share: int) -> dict[str, str]:
    """Environment for a child process that runs torch on `share` of this machine's CPUs."""
    n = str(max(1, share))
    return {ENV: n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def in_own_thread(fn: Callable[[], T]) -> T:
    """`fn()` run in a new, short-lived thread; its result, or its exception raised here.

    torch's CPU kernels run on an OpenMP thread pool that belongs to the thread that started it
    and lives as long as that thread. With GNU OpenMP, once the pools of live threads hold more
    threads than there are CPUs, every pool's workers stop spinning between kernels and sleep
    instead, and each of the many tiny kernels of a decode step then waits for a wake-up: a
    bfloat16 decode step took 41 ms on the decode thread after the main thread had loaded the
    model, 24 ms when the model was loaded on a thread that had ended. Loading a model here
    leaves the caller's thread (usually the main one) without a pool."""
    with ThreadPoolExecutor(1, thread_name_prefix="agentmeta-load") as pool:  # its thread ends on exit
        return pool.submit(fn).result()

"""GGUF files for the llama.cpp provider (`agentmeta.models.llamacpp`): loading llama-cpp-python,
a file's weight type, re-quantized copies written once into the models folder, and the one-time
probe of llama.cpp's extra weight buffers (AMX) on this CPU."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentmeta.errors import ModelLoadError, require
from agentmeta.models import threads
from agentmeta.models.fingerprint import digest, file_fingerprint

log = logging.getLogger(__name__)

BUILD_ARGS = "-DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF"
INSTALL = f"CMAKE_ARGS='{BUILD_ARGS}' pip install 'agentmeta[llamacpp]' (builds llama.cpp: needs cmake and a C++ compiler)"
_checked_build = False


def _llama() -> Any:
    global _checked_build
    lib = require("llama_cpp", INSTALL, "llama-cpp-python")
    from llama_cpp import _logger

    _logger.set_verbose(False)  # llama.cpp's load and context logs, printed on every load
    if not _checked_build:
        _checked_build = True
        if b"OPENMP = 1" in (lib.llama_print_system_info() or b""):
            # torch's wheel ships libgomp under the same soname, so both share one OpenMP runtime;
            # with llama.cpp's thread team added it manages more threads than there are CPUs and
            # throttles every spin-wait: torch ran 1.8x slower in the same process once llama.cpp had run
            log.warning(
                "llama-cpp-python was built with OpenMP: torch in this process (the smollm2 and hf/ "
                "models, training) will run slower once llama.cpp has run. Rebuild it with "
                "CMAKE_ARGS='%s' pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python",
                BUILD_ARGS,
            )
    return lib


QUANT_TYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
}
"""Types a GGUF can be converted to (`llamacpp/q8_0`, `llamacpp/<file.gguf>:q8_0`)."""
EMBEDDED_TYPE = "f16"
"""What `llamacpp` runs the embedded model as (its shipped file is `q4_1`)."""
_quant_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Send this process's stdout and stderr file descriptors to /dev/null meanwhile (C code's
    printf bypasses Python's streams)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def file_type(path: Path) -> int | None:
    """The GGUF's `general.file_type` (llama.cpp's LLAMA_FTYPE_* number), None if it has none."""
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    except Exception:  # noqa: BLE001 - not a GGUF file: llama.cpp says so when it loads it
        return None
    return int(field.parts[field.data[0]][0]) if field is not None else None


def requantized(lib: Any, src: Path, quant: str) -> Path:
    """`src` converted to `quant` by llama.cpp, written once next to the other converted models
    (`agentmeta.config.models_dir()`) and reused while `src` is unchanged; `src` itself when it
    already is of that type."""
    from agentmeta import config

    if quant not in QUANT_TYPES:
        raise ModelLoadError(f"unknown quantization {quant!r}; valid: {', '.join(QUANT_TYPES)}")
    if file_type(src) == getattr(lib, QUANT_TYPES[quant]):
        return src
    tag = digest({"source": file_fingerprint(src)})[:12]
    target = config.models_dir() / f"{src.stem}.{tag}.{quant}.gguf"
    if target.is_file():
        return target
    with _quant_lock:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
        params = lib.llama_model_quantize_default_params()
        params.ftype = getattr(lib, QUANT_TYPES[quant])
        params.allow_requantize = True
        params.nthread = threads.torch_threads()
        log.info("re-quantizing %s to %s once into %s", src.name, quant, target)
        try:
            with _quiet_fds():  # llama.cpp prints a line per tensor to stdout
                rc = lib.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
            if rc != 0 or not tmp.is_file():
                raise ModelLoadError(f"llama.cpp could not re-quantize {src.name} to {quant} (code {rc})")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


_PROBE = """
import sys
import llama_cpp as l
from llama_cpp import _logger
_logger.set_verbose(False)
l.llama_backend_init()
mp = l.llama_model_default_params()
mp.n_gpu_layers = 0
m = l.llama_model_load_from_file(sys.argv[1].encode(), mp)
if not m:
    sys.exit(3)
cp = l.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_threads, cp.n_threads_batch = 64, 16, 16, 1, 1
ctx = l.llama_init_from_model(m, cp)
b = l.llama_batch_init(16, 0, 1)
for n in (16, 1):  # a prefill step, then a one-token step
    for i in range(n):
        b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = 1, i, 1, 0, i == n - 1
    b.n_tokens = n
    if l.llama_decode(ctx, b) != 0:
        sys.exit(4)
"""
_extra_buffers_ok: bool | None = None


def extra_buffers_work(lib: Any) -> bool:
    """Whether llama.cpp's extra weight buffer types (AMX tiles, repacked layouts) run here.

    A CPU that reports AMX is probed once: a child process decodes with the embedded model's
    4-bit GGUF (Q4_1, a type with AMX kernels). In some virtual machines the CPU reports AMX and
    the kernel grants it, yet the tile instructions fault (SIGILL or SIGSEGV): the whole process
    would die at the first decode. The answer is kept in the cache directory per llama-cpp-python
    version and CPU; `AGENTMETA_LLAMACPP_EXTRA_BUFFERS=0/1` decides instead."""
    global _extra_buffers_ok
    from agentmeta import config

    chosen = config.llamacpp_extra_buffers()
    if chosen is not None:
        return chosen
    if _extra_buffers_ok is not None:
        return _extra_buffers_ok
    try:
        flags = next(
            (ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), ""
        ).split()
    except OSError:
        flags = []
    if not any(f.startswith("amx") for f in flags):
        _extra_buffers_ok = True
        return True
    import subprocess

    from agentmeta._paths import atomic_write
    from agentmeta.models.hf import gguf_path

    key = digest({"llama_cpp": getattr(lib, "__version__", "?"), "flags": sorted(flags)})
    record = config.cache_dir() / "llamacpp-extra-buffers.json"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), bool):
        _extra_buffers_ok = known[key]
        return _extra_buffers_ok
    try:
        code: int | str = subprocess.run(
            [sys.executable, "-c", _PROBE, str(gguf_path())], capture_output=True, timeout=300, check=False
        ).returncode
    except (OSError, subprocess.TimeoutExpired, ModelLoadError) as e:
        code = type(e).__name__
    ok = code == 0
    if not ok:
        log.warning(
            "llama.cpp's extra weight buffers (AMX) fail on this CPU (a probe decode ended with %s): "
            "running without them", code
        )
    _extra_buffers_ok = ok
    with contextlib.suppress(OSError):  # an unwritable cache only means probing again next time
        known = known if isinstance(known, dict) else {}
        atomic_write(record, json.dumps({**known, key: ok}))
    return ok

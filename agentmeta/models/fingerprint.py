"""Fingerprints of model folders, for the call cache's model identity.

A cache entry must never be served for weights other than the ones that produced it: a retrained
adapter saved into the same folder, a changed shard of a sharded checkpoint or a new tokenizer all
change the fingerprint. Small files (configs, tokenizers, adapters: anything under
`FULL_HASH_BELOW` bytes) are hashed in full, so even a rewrite with the same size and the same
modification time is seen. Big weight files are fingerprinted by name, size, mtime_ns and a hash
of their first and last MiB, which catches any rewrite that touches the mtime (reading gigabytes
at every load is not affordable).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

from agentmeta.errors import ModelLoadError

FULL_HASH_BELOW = 64 << 20
"""Files smaller than this are hashed in full."""
EDGE_BYTES = 1 << 20
"""Bytes hashed at each end of a bigger file."""

# Files that decide what a folder's model answers: weights, index files, configs, tokenizer,
# chat template, adapter files and custom modeling code (trust_remote_code).
MODEL_FILES = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.gguf",
    "*.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
    "adapter_config.json",
    "*.py",
)
# Trainer state kept next to a checkpoint: large, rewritten often, never loaded for inference.
IGNORED_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt")


def _wanted(name: str) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in MODEL_FILES) and not any(
        fnmatch.fnmatch(name, p) for p in IGNORED_FILES
    )


def file_fingerprint(path: Path, full_hash_below: int = FULL_HASH_BELOW) -> str:
    """The content hash of a small file; name, size, mtime_ns and edge hashes of a big one."""
    st = path.stat()  # follows symlinks (the Hugging Face cache links snapshot files to blobs)
    h = hashlib.sha256()
    with path.open("rb") as f:
        if st.st_size < full_hash_below:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            return f"sha256:{h.hexdigest()}"
        h.update(f.read(EDGE_BYTES))
        f.seek(max(st.st_size - EDGE_BYTES, 0))
        h.update(f.read(EDGE_BYTES))
    return f"size:{st.st_size}:mtime_ns:{st.st_mtime_ns}:edges:{h.hexdigest()}"


def folder_files(folder: Path) -> dict[str, str]:
    """Fingerprint of each model file directly in `folder` (subfolders are not loaded, so skipped)."""
    out: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        if _wanted(p.name) and p.is_file():
            out[p.name] = file_fingerprint(p)
    return out


def folder_fingerprint(folder: str | Path) -> str:
    """One hash over the model files of `folder` (their names and fingerprints)."""
    blob = json.dumps(folder_files(Path(folder)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot folder of a Hugging Face hub id, if it is in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - comes with transformers
        return None
    found = try_to_load_from_cache(model_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def source_fingerprint(model: str) -> dict[str, Any]:
    """What identifies the weights behind `model`: a local folder's or a cached hub snapshot's files.

    A local folder is identified by its files alone (not its path: two copies with the same files
    answer the same); a hub id that is not in the local cache by its name only.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        return {"files": folder_fingerprint(local)}
    if local.is_file():  # a single weight file (e.g. a GGUF)
        return {"file": local.name, "fingerprint": file_fingerprint(local)}
    snap = hub_snapshot(model)
    if snap is not None:
        return {"hub": model, "revision": snap.name, "files": folder_fingerprint(snap)}
    return {"name": model}


def digest(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able description."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_fingerprint(model: str, adapter: str | None) -> dict[str, Any]:
    """Fingerprints of a model's files and, if any, its adapter's (taken before and after loading)."""
    parts: dict[str, Any] = {"model": source_fingerprint(model)}
    if adapter:
        parts["adapter"] = source_fingerprint(adapter)
    return parts


def check_unchanged(before: dict[str, Any], model: str, adapter: str | None) -> dict[str, Any]:
    """The fingerprint after loading; `ModelLoadError` if the files changed while they were read
    (a hub id is fetched during the load, so its "before" has no files to compare)."""
    after = load_fingerprint(model, adapter)
    if after != before and "name" not in before["model"]:
        raise ModelLoadError(
            f"the files of {model!r}"
            + (f" or of adapter {adapter!r}" if adapter else "")
            + " changed while it was loading (a training run still writing?): load it again"
        )
    return after

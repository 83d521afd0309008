"""Disk cache of model calls, keyed by (model, messages, sampling params, seed).

Only seeded calls are cached: an unseeded sample is meant to differ each time. SQLite in WAL
mode, so several processes (a resumed campaign, parallel evaluations) share one file safely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from agentmeta.models.types import GenerateRequest, GenerateResponse


def cache_key(model_identity: str, request: GenerateRequest) -> str:
    payload = {"model": model_identity, "request": request.model_dump(mode="json")}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CallCache:
    """A persistent map from call keys to responses, with hit/miss counts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
        self._conn.commit()

    def get(self, model_identity: str, request: GenerateRequest) -> GenerateResponse | None:
        key = cache_key(model_identity, request)
        with self._lock:
            row = self._conn.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        resp = GenerateResponse.model_validate_json(row[0])
        return resp.model_copy(update={"cached": True, "latency_s": 0.0})

    def put(self, model_identity: str, request: GenerateRequest, response: GenerateResponse) -> None:
        key = cache_key(model_identity, request)
        blob = response.model_copy(update={"cached": False}).model_dump_json()
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO calls (key, response) VALUES (?, ?)", (key, blob))
            self._conn.commit()

    def stats(self) -> dict[str, int]:
        with self._lock:
            (size,) = self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()
        return {"hits": self.hits, "misses": self.misses, "entries": int(size)}

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM calls")
            self._conn.commit()

"""Call store: every call's record, kept across restarts (SQLite by default).

A record is the api-rules.md call shape (`id`, `carrier_ids`, `state`, `started_at`, transcript,
events, cost, …) as a JSON-able dict. The store keeps it whole, as JSON text, because events
can be long and the REST API returns them as they are; the few fields that lists filter and sort
on (`started_at`, `state`) and a summary live in columns beside it, and every carrier id value
(Twilio CallSid, stream SID, SIP Call-ID) goes in a side table so `get` finds a call by any of
them.

`SQLiteCallStore` runs stdlib `sqlite3` on ONE worker thread: the event loop never blocks on
disk, and one thread owning the connection serializes writes without locks. WAL mode lets a
second process (the CLI) read while the server writes. `synchronous=NORMAL` under WAL survives
a crash of the process; a power cut may lose the last transactions, not corrupt the file.

A record is encoded to JSON on the caller's side (the event loop) before it crosses to the
worker thread, so the thread never reads a dict the call is still changing.

`MemoryCallStore` has the same behaviour without a file (tests, `store_path` empty).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "SCHEMA_VERSION",
    "CallStore",
    "MemoryCallStore",
    "SQLiteCallStore",
    "StoreError",
    "summarize",
]

SCHEMA_VERSION = 1
MAX_PAGE = 200
DEFAULT_PAGE = 50

#: Fields of a record that a list entry carries (absent ones as null), plus `cost_usd`.
SUMMARY_FIELDS = (
    "id",
    "carrier",
    "direction",
    "from",
    "to",
    "carrier_ids",
    "agent",
    "campaign",
    "backend",
    "state",
    "started_at",
    "answered_at",
    "ended_at",
    "end_reason",
)

JSON = dict[str, Any]
Page = tuple[list[JSON], str | None]
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The store cannot be used: closed, or a database this version cannot read."""


class CallStore(Protocol):
    """Where call records live. All methods are coroutines; records are JSON-able dicts."""

    async def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the whole record of `record["id"]`."""
        ...

    async def get(self, call_id: str) -> JSON | None:
        """The record by our call id, or by any carrier id value (CallSid, SIP Call-ID, …)."""
        ...

    async def list(
        self,
        *,
        state: str | None = None,
        since: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        """Summaries newest first, and the cursor of the next page (None at the end)."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- shared rules


def summarize(record: Mapping[str, Any]) -> JSON:
    """The list entry of a record: identity, parties, state, times, and the cost total.

    Every key is present (null when the record lacks it), so live and stored entries of
    `GET /calls` have one shape; `cost_usd` is `cost.total`.
    """
    out = {key: record.get(key) for key in SUMMARY_FIELDS}
    cost = record.get("cost")
    out["cost_usd"] = cost.get("total") if isinstance(cost, Mapping) else None
    return out


def _sort_key(value: Any, what: str) -> str:
    """An ISO-8601 time as a fixed-width UTC string, so text order is time order.

    A time without a zone is taken as UTC (the records' times are UTC, api-rules.md).
    """
    if not isinstance(value, str):
        raise ValueError(
            f"{what} must be an ISO-8601 time string such as 2026-11-25T14:00:00Z, got {value!r}"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{what} must be an ISO-8601 time such as 2026-11-25T14:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # money reaches records as floats; tolerate a stray Decimal
    raise TypeError(f"a call record must be JSON-able; {type(value).__name__} is not")


@dataclass(frozen=True, slots=True)
class _Prepared:
    id: str
    started_key: str
    state: str | None
    carrier_ids: tuple[tuple[str, str], ...]  # (name, value)
    summary: str
    record: str


def _prepare(record: Mapping[str, Any]) -> _Prepared:
    call_id = record.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise ValueError(f"a call record needs a non-empty string id, got {call_id!r}")
    started_key = _sort_key(record.get("started_at"), "started_at")
    state = record.get("state")
    ids = record.get("carrier_ids") or {}
    if not isinstance(ids, Mapping):
        raise ValueError(f"carrier_ids must be an object of name → id, got {type(ids).__name__}")
    carrier_ids = tuple((str(k), v) for k, v in ids.items() if isinstance(v, str) and v)
    dump = functools.partial(
        json.dumps, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    )
    return _Prepared(
        id=call_id,
        started_key=started_key,
        state=state if isinstance(state, str) else None,
        carrier_ids=carrier_ids,
        summary=dump(summarize(record)),
        record=dump(record),
    )


def _check_limit(limit: int) -> int:
    """A page size: at least 1; more than MAX_PAGE is served as MAX_PAGE (memory per request)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number ≥ 1, got {limit!r}")
    return min(limit, MAX_PAGE)


def _encode_cursor(started_key: str, call_id: str) -> str:
    raw = json.dumps([started_key, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    """The (started_key, id) of the last entry of the previous page (keyset pagination)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_key, call_id = json.loads(raw)
        if isinstance(started_key, str) and isinstance(call_id, str):
            return started_key, call_id
    except (ValueError, binascii.Error, TypeError):
        pass
    raise ValueError("cursor is not one this store returned; start again without a cursor")


# --------------------------------------------------------------------------- memory


class MemoryCallStore:
    """Records in memory, encoded as JSON like on disk (so both stores behave the same).

    Bounded: beyond `max_calls` the oldest calls (by `started_at`) are dropped.
    """

    def __init__(self, *, max_calls: int = 10_000) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be ≥ 1, got {max_calls}")
        self.max_calls = max_calls
        self._rows: dict[str, _Prepared] = {}
        self._by_carrier_id: dict[str, set[str]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the call store is closed")

    def _unindex(self, row: _Prepared) -> None:
        for _, value in row.carrier_ids:
            ids = self._by_carrier_id.get(value)
            if ids is not None:
                ids.discard(row.id)
                if not ids:
                    del self._by_carrier_id[value]

    async def save(self, record: Mapping[str, Any]) -> None:
        self._check_open()
        row = _prepare(record)
        old = self._rows.pop(row.id, None)
        if old is not None:
            self._unindex(old)
        self._rows[row.id] = row
        for _, value in row.carrier_ids:
            self._by_carrier_id.setdefault(value, set()).add(row.id)
        while len(self._rows) > self.max_calls:
            oldest = min(self._rows.values(), key=lambda r: (r.started_key, r.id))
            self._unindex(self._rows.pop(oldest.id))

    async def get(self, call_id: str) -> JSON | None:
        self._check_open()
        row = self._rows.get(call_id)
        if row is None:
            ids = self._by_carrier_id.get(call_id)
            if not ids:
                return None
            row = max((self._rows[i] for i in ids), key=lambda r: (r.started_key, r.id))
        result: JSON = json.loads(row.record)
        return result

    async def list(
        self,
        *,
        state: str | None = None,
        since: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        self._check_open()
        limit = _check_limit(limit)
        since_key = _sort_key(since, "since") if since is not None else None
        after = _decode_cursor(cursor) if cursor is not None else None
        rows = sorted(self._rows.values(), key=lambda r: (r.started_key, r.id), reverse=True)
        page: list[_Prepared] = []
        for row in rows:
            if state is not None and row.state != state:
                continue
            if since_key is not None and row.started_key < since_key:
                continue
            if after is not None and (row.started_key, row.id) >= after:
                continue
            page.append(row)
            if len(page) > limit:
                break
        return _page([(r.started_key, r.id, r.summary) for r in page], limit)

    async def close(self) -> None:
        self._closed = True


def _page(rows: list[tuple[str, str, str]], limit: int) -> Page:
    """Summaries of the first `limit` rows; a cursor if a further row was fetched."""
    summaries = [json.loads(summary) for _, _, summary in rows[:limit]]
    if len(rows) > limit:
        last_key, last_id, _ = rows[limit - 1]
        return summaries, _encode_cursor(last_key, last_id)
    return summaries, None


# --------------------------------------------------------------------------- SQLite

# Version 1. A later version adds a step to _MIGRATIONS (from version n to n + 1); the file
# records its version, and a file from a newer Switchboard is refused rather than misread.
_SCHEMA_V1 = """
CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    started_key TEXT NOT NULL,   -- started_at as fixed-width UTC text: sorts in time order
    state       TEXT,
    updated_at  TEXT NOT NULL,
    summary     TEXT NOT NULL,   -- JSON: the list entry
    record      TEXT NOT NULL    -- JSON: the whole call record
);
CREATE INDEX calls_by_started ON calls (started_key DESC, id DESC);
CREATE INDEX calls_by_state ON calls (state, started_key DESC, id DESC);
CREATE TABLE carrier_ids (
    value   TEXT NOT NULL,       -- a CallSid, stream SID, SIP Call-ID, …
    call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    name    TEXT NOT NULL,       -- its key in the record's carrier_ids
    PRIMARY KEY (value, call_id, name)
);
CREATE INDEX carrier_ids_by_call ON carrier_ids (call_id);
"""
_MIGRATIONS: dict[int, str] = {}


class SQLiteCallStore:
    """Call records in one SQLite file (WAL), used from a single worker thread.

    The constructor opens the file and brings its schema up to date before returning, so a bad
    path or a newer database fails at start-up, not on the first call.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-store")
        self._closed = False
        try:
            self._conn: sqlite3.Connection = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    # ------------------------------------------------------------------ worker thread

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; each write says BEGIN/COMMIT itself.
        conn = sqlite3.connect(self.path, isolation_level=None, uri=self.path.startswith("file:"))
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")  # another process (the CLI) may hold a lock
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            has_version = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not has_version:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (1,))
            (version,) = conn.execute("SELECT version FROM schema_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the call store was written by a newer Switchboard (schema {version}, this one "
                    f"reads {SCHEMA_VERSION}); upgrade, or point SWITCHBOARD_STORE_PATH at another file"
                )
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute("UPDATE schema_version SET version = ?", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _save(self, row: _Prepared, updated_at: str) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO calls (id, started_key, state, updated_at, summary, record)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET started_key = excluded.started_key,"
                " state = excluded.state, updated_at = excluded.updated_at,"
                " summary = excluded.summary, record = excluded.record",
                (row.id, row.started_key, row.state, updated_at, row.summary, row.record),
            )
            conn.execute("DELETE FROM carrier_ids WHERE call_id = ?", (row.id,))
            conn.executemany(
                "INSERT OR IGNORE INTO carrier_ids (value, call_id, name) VALUES (?, ?, ?)",
                [(value, row.id, name) for name, value in row.carrier_ids],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _get(self, key: str) -> str | None:
        found = self._conn.execute("SELECT record FROM calls WHERE id = ?", (key,)).fetchone()
        if found is None:
            found = self._conn.execute(
                "SELECT c.record FROM carrier_ids AS k JOIN calls AS c ON c.id = k.call_id"
                " WHERE k.value = ? ORDER BY c.started_key DESC, c.id DESC LIMIT 1",
                (key,),
            ).fetchone()
        return None if found is None else str(found[0])

    def _list(
        self, state: str | None, since_key: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, str, str]]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if since_key is not None:
            where.append("started_key >= ?")
            params.append(since_key)
        if after is not None:
            where.append("(started_key < ? OR (started_key = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        sql = "SELECT started_key, id, summary FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_key DESC, id DESC LIMIT ?"
        params.append(limit + 1)  # one more tells whether there is a next page
        return [(str(a), str(b), str(c)) for a, b, c in self._conn.execute(sql, params)]

    # ------------------------------------------------------------------ async API

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise StoreError("the call store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def save(self, record: Mapping[str, Any]) -> None:
        row = _prepare(record)  # here, not in the thread: the record may change after we yield
        updated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self._run(self._save, row, updated_at)

    async def get(self, call_id: str) -> JSON | None:
        text = await self._run(self._get, call_id)
        if text is None:
            return None
        result: JSON = json.loads(text)
        return result

    async def list(
        self,
        *,
        state: str | None = None,
        since: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        limit = _check_limit(limit)
        since_key = _sort_key(since, "since") if since is not None else None
        after = _decode_cursor(cursor) if cursor is not None else None
        rows = await self._run(self._list, state, since_key, after, limit)
        return _page(rows, limit)

    async def schema_version(self) -> int:
        """The schema version recorded in the file."""

        def read() -> int:
            (version,) = self._conn.execute("SELECT version FROM schema_version").fetchone()
            return int(version)

        return await self._run(read)

    async def close(self) -> None:
        """Close the file; pending writes finish first (the worker runs jobs in order)."""
        if self._closed:
            return
        await self._run(self._conn.close)
        self._closed = True
        self._executor.shutdown(wait=True)

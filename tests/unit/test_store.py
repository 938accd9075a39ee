"""Call store: save/get/list, carrier-id lookups, pagination, restarts, concurrency, schema."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store import (
    MAX_PAGE,
    SCHEMA_VERSION,
    CallStore,
    MemoryCallStore,
    SQLiteCallStore,
    StoreError,
    summarize,
)


def record(n: int, *, state: str = "ended", second: int | None = None, **extra: Any) -> dict[str, Any]:
    """A call record in the api-rules.md shape; call n starts n seconds after 14:00 unless told."""
    s = n if second is None else second
    return {
        "id": f"call_{n:04d}",
        "carrier": "twilio",
        "direction": "inbound",
        "from": "+15550000001",
        "to": "+15550000002",
        "carrier_ids": {"call_sid": f"CA{n:032x}", "stream_sid": f"MZ{n:032x}"},
        "agent": "front_desk",
        "backend": "realtime",
        "state": state,
        "started_at": f"2026-11-25T14:{s // 60 % 60:02d}:{s % 60:02d}Z",
        "answered_at": None,
        "ended_at": None,
        "end_reason": "caller_hangup" if state == "ended" else None,
        "transcript": [
            {"role": "assistant", "text": "Hello, how can I help?", "t_ms": 120, "interrupted": False}
        ],
        "events": [
            {"t_ms": 0, "type": "state", "to": "active"},
            {"t_ms": 3300, "type": "barge_in", "heard_ms": 640},
        ],
        "cost": {"currency": "USD", "total": 0.0123, "items": []},
        **extra,
    }


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CallStore]:
    s: CallStore = SQLiteCallStore(tmp_path / "calls.db") if request.param == "sqlite" else MemoryCallStore()
    yield s
    await s.close()


async def test_save_get_roundtrip_and_upsert(store: CallStore) -> None:
    rec = record(1, state="active")
    await store.save(rec)
    assert await store.get("call_0001") == rec
    rec["state"] = "ended"
    rec["events"].append({"t_ms": 9000, "type": "state", "to": "ended"})
    await store.save(rec)
    got = await store.get("call_0001")
    assert got == rec
    # What get returns is a copy: changing it does not change the store.
    assert got is not None
    got["state"] = "changed"
    assert (await store.get("call_0001"))["state"] == "ended"  # type: ignore[index]
    assert await store.get("call_9999") is None


async def test_lookup_by_any_carrier_id(store: CallStore) -> None:
    await store.save(record(1))
    await store.save(record(2, carrier_ids={"sip_call_id": "a84b4c76e66710@pc33.example.com"}))
    assert (await store.get(f"CA{1:032x}"))["id"] == "call_0001"  # type: ignore[index]
    assert (await store.get(f"MZ{1:032x}"))["id"] == "call_0001"  # type: ignore[index]
    assert (await store.get("a84b4c76e66710@pc33.example.com"))["id"] == "call_0002"  # type: ignore[index]
    # Carrier ids are re-indexed on every save: an id the record no longer has stops matching.
    await store.save(record(1, carrier_ids={"call_sid": "CAnew"}))
    assert await store.get(f"CA{1:032x}") is None
    assert (await store.get("CAnew"))["id"] == "call_0001"  # type: ignore[index]


async def test_list_is_newest_first_paginated_and_filtered(store: CallStore) -> None:
    for n in range(25):
        await store.save(record(n, state="active" if n % 5 == 0 else "ended"))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list(limit=10, cursor=cursor)
        pages += 1
        seen += [s["id"] for s in page]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"call_{n:04d}" for n in reversed(range(25))]

    active, nxt = await store.list(state="active", limit=10)
    assert [s["id"] for s in active] == ["call_0020", "call_0015", "call_0010", "call_0005", "call_0000"]
    assert nxt is None
    recent, _ = await store.list(since="2026-11-25T14:00:20Z")
    assert [s["id"] for s in recent] == [f"call_{n:04d}" for n in (24, 23, 22, 21, 20)]
    # `since` in another zone means the same instant.
    same, _ = await store.list(since="2026-11-25T15:00:20+01:00")
    assert same == recent
    both, _ = await store.list(state="active", since="2026-11-25T14:00:10Z")
    assert [s["id"] for s in both] == ["call_0020", "call_0015", "call_0010"]


async def test_summaries_carry_identity_state_times_and_cost_total_not_events(store: CallStore) -> None:
    await store.save(record(7))
    [summary], _ = await store.list()
    assert summary == summarize(record(7))
    assert summary["carrier_ids"]["call_sid"] == f"CA{7:032x}"
    assert summary["cost_usd"] == 0.0123
    assert summary["campaign"] is None  # absent fields are null: one shape for every entry
    assert "events" not in summary and "transcript" not in summary and "cost" not in summary


async def test_same_start_time_paginates_without_gaps_or_repeats(store: CallStore) -> None:
    for n in range(7):
        await store.save(record(n, second=0))
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(limit=3, cursor=cursor)
        ids += [s["id"] for s in page]
        if cursor is None:
            break
    assert ids == [f"call_{n:04d}" for n in reversed(range(7))]


async def test_bad_arguments_are_rejected(store: CallStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list(limit=0)
    with pytest.raises(ValueError, match="cursor"):
        await store.list(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="since"):
        await store.list(since="yesterday")
    with pytest.raises(ValueError, match="id"):
        await store.save({"started_at": "2026-11-25T14:00:00Z"})
    with pytest.raises(ValueError, match="started_at"):
        await store.save({"id": "call_x", "started_at": 1732543200.0})
    with pytest.raises(TypeError, match="JSON"):
        await store.save({"id": "call_x", "started_at": "2026-11-25T14:00:00Z", "x": object()})


async def test_page_size_is_capped(store: CallStore) -> None:
    for n in range(MAX_PAGE + 5):
        await store.save(record(n, second=n % 3600))
    page, cursor = await store.list(limit=10_000)
    assert len(page) == MAX_PAGE
    assert cursor is not None


async def test_record_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data" / "calls.db"  # the directory is created
    first = SQLiteCallStore(path)
    rec = record(3, text="naïve café ☎")
    await first.save(rec)
    await first.close()
    await first.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await first.get("call_0003")

    second = SQLiteCallStore(path)
    try:
        assert await second.get("call_0003") == rec
        assert await second.get(f"CA{3:032x}") == rec
        page, _ = await second.list()
        assert [s["id"] for s in page] == ["call_0003"]
        assert await second.schema_version() == SCHEMA_VERSION
    finally:
        await second.close()


async def test_concurrent_saves_from_many_tasks_do_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = SQLiteCallStore(path)

    async def caller(task: int) -> None:
        for i in range(20):
            n = task * 100 + i
            rec = record(n, second=n % 3600)
            await store.save(rec)
            rec["state"] = "ended"
            rec["events"].append({"t_ms": i, "type": "state", "to": "ended"})
            await store.save(rec)

    async with asyncio.TaskGroup() as tg:
        for task in range(30):
            tg.create_task(caller(task))
    await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (600,)
        assert conn.execute("SELECT count(*) FROM carrier_ids").fetchone() == (1200,)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        index_names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"calls_by_started", "calls_by_state", "carrier_ids_by_call"} <= index_names
    finally:
        conn.close()

    reopened = SQLiteCallStore(path)
    try:
        got = await reopened.get("call_2919")
        assert got is not None and got["state"] == "ended" and len(got["events"]) == 3
    finally:
        await reopened.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    await SQLiteCallStore(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer Switchboard"):
        SQLiteCallStore(path)


async def test_memory_store_is_bounded() -> None:
    store = MemoryCallStore(max_calls=3)
    for n in range(5):
        await store.save(record(n))
    page, _ = await store.list()
    assert [s["id"] for s in page] == ["call_0004", "call_0003", "call_0002"]
    assert await store.get(f"CA{0:032x}") is None

"""PlaybackLedger on virtual time: bounded lead, marks, heard position, clear."""

from __future__ import annotations

import pytest

from gateway.playback import PlaybackLedger

MS = 8  # μ-law bytes per ms


def test_lead_bound_holds_and_marks_top_up() -> None:
    """Never more than lead_ms unconfirmed; each returned mark lets exactly one more chunk out."""
    ledger = PlaybackLedger(lead_ms=100, chunk_ms=20)
    ledger.enqueue("a", b"\x01" * (1000 * MS))
    out = ledger.pump(0.0)
    assert len(out) == 5
    assert all(len(c.payload) == 20 * MS for c in out)
    assert ledger.unconfirmed_ms == pytest.approx(100)
    assert ledger.pump(0.01) == []
    assert ledger.on_mark(out[0].mark, 0.02)
    more = ledger.pump(0.02)
    assert len(more) == 1
    assert ledger.unconfirmed_ms == pytest.approx(100)
    assert ledger.max_unconfirmed_ms == pytest.approx(100)


def test_heard_ms_uses_confirmations_and_elapsed_time_capped_by_sent() -> None:
    ledger = PlaybackLedger(lead_ms=100, chunk_ms=20)
    ledger.enqueue("a", b"\x01" * (60 * MS))
    out = ledger.pump(10.0)
    assert ledger.heard_ms("a", 10.0) == 0
    assert ledger.heard_ms("a", 10.015) == 15
    ledger.on_mark(out[0].mark, 10.021)
    assert ledger.heard_ms("a", 10.021) == 20
    assert ledger.heard_ms("a", 10.031) == 30
    # Far in the future: never more than was sent.
    assert ledger.heard_ms("a", 99.0) == 60


def test_clear_settles_heard_and_discards_marks() -> None:
    ledger = PlaybackLedger(lead_ms=100, chunk_ms=20)
    ledger.enqueue("a", b"\x01" * (300 * MS))
    out = ledger.pump(0.0)
    ledger.on_mark(out[0].mark, 0.02)
    result = ledger.clear(0.025)
    assert result is not None
    assert (result.item_id, result.heard_ms, result.sent_ms) == ("a", 25, 100)
    assert ledger.idle and not ledger.audible
    # The echoes of discarded marks confirm nothing.
    for chunk in out[1:]:
        assert not ledger.on_mark(chunk.mark, 0.03)
    assert ledger.heard_ms("a", 0.5) == 25
    assert ledger.dropped_bytes == 200 * MS


def test_clear_with_nothing_playing_returns_none() -> None:
    ledger = PlaybackLedger()
    assert ledger.clear(1.0) is None


def test_mark_confirms_everything_before_it() -> None:
    ledger = PlaybackLedger(lead_ms=100, chunk_ms=20)
    ledger.enqueue("a", b"\x01" * (100 * MS))
    out = ledger.pump(0.0)
    assert ledger.on_mark(out[2].mark, 0.06)
    assert ledger.unconfirmed_ms == pytest.approx(40)
    assert ledger.heard_ms("a", 0.06) == 60
    assert not ledger.on_mark("nonsense", 0.07)
    assert ledger.unknown_marks == 1


def test_items_are_accounted_separately() -> None:
    ledger = PlaybackLedger(lead_ms=200, chunk_ms=20)
    ledger.enqueue("a", b"\x01" * (40 * MS))
    ledger.enqueue("b", b"\x02" * (40 * MS))
    out = ledger.pump(0.0)
    assert [c.item_id for c in out] == ["a", "a", "b", "b"]
    ledger.on_mark(out[1].mark, 0.04)
    assert ledger.current_item() == "b"
    assert ledger.heard_ms("a", 0.05) == 40
    assert ledger.heard_ms("b", 0.05) == 10


def test_pending_is_bounded() -> None:
    ledger = PlaybackLedger(lead_ms=20, chunk_ms=20)
    ledger.MAX_PENDING_MS = 100
    ledger.enqueue("a", b"\x01" * (150 * MS))
    assert ledger.pending_ms == 100
    assert ledger.dropped_bytes == 50 * MS


def test_lead_shorter_than_chunk_is_rejected() -> None:
    with pytest.raises(ValueError, match="lead_ms"):
        PlaybackLedger(lead_ms=10, chunk_ms=20)

"""The playback ledger: what the caller has been sent, what they have heard, what to send next.

Pure bookkeeping, no I/O; every method that depends on time takes `now` (seconds, monotonic).

Why marks: Twilio plays the audio we send from its own buffer and tells us nothing about
progress except by echoing a `mark` once the audio queued before it has played (and at once,
for every outstanding mark, on `clear`). So after every chunk we send a mark; the returned marks
are the only ground truth of what the caller heard (shared/reference/protocols.md §1.3).

Two rules come from that (shared/reference/bridge-rules.md, "Playback and barge-in"):

- Bounded lead: never more than `lead_ms` of unconfirmed audio sits at the carrier. Unconfirmed
  is an upper bound of what is still buffered there (confirmations lag plays), so the carrier's
  buffer never exceeds the bound; and we top it up on every confirmation, so it does not run
  dry while we hold audio.
- Heard position at a given `now`: confirmed audio plus, for audio in flight, the time since it
  started playing (the later of the last confirmation and its send time), capped at what was sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class _Chunk:
    mark: str
    item_id: str
    start_ms: float  # position of this chunk inside its item
    dur_ms: float
    sent_at: float


@dataclass(frozen=True, slots=True)
class OutChunk:
    """One piece of audio to send now, followed by a mark with `mark` as its name."""

    item_id: str
    payload: bytes
    mark: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """What `clear()` found: the item that was playing and how much of it the caller heard."""

    item_id: str
    heard_ms: int
    sent_ms: int


class PlaybackLedger:
    """Tracks outbound audio per assistant item; see the module docstring for the rules."""

    # Security/sanity bound on audio held for one call before the carrier takes it: the model
    # sends faster than real time, but more than this much unplayed speech is a runaway.
    MAX_PENDING_MS = 120_000
    # Names of marks discarded by `clear` that have not come back yet; Twilio echoes them all
    # at once, so this stays small. The bound only protects against a carrier that never does.
    MAX_DISCARDED = 4096

    def __init__(self, *, lead_ms: int = 250, chunk_ms: int = 20, bytes_per_ms: int = 8) -> None:
        if lead_ms < chunk_ms:
            raise ValueError(f"lead_ms ({lead_ms}) must be at least one chunk ({chunk_ms} ms)")
        self.lead_ms = lead_ms
        self.chunk_ms = chunk_ms
        self.bytes_per_ms = bytes_per_ms
        self._pending: deque[tuple[str, bytearray]] = deque()
        self._pending_bytes = 0
        self._outstanding: deque[_Chunk] = deque()
        self._outstanding_ms = 0.0
        self._sent_ms: dict[str, float] = {}
        self._confirmed_ms: dict[str, float] = {}
        self._confirmed_at: float | None = None
        self._discarded: set[str] = set()
        self._mark_seq = 0
        self.dropped_bytes = 0
        self.unknown_marks = 0
        self.max_unconfirmed_ms = 0.0

    # ------------------------------------------------------------------ queries

    @property
    def audible(self) -> bool:
        """Audio has been sent and not all of it is confirmed played."""
        return bool(self._outstanding)

    @property
    def idle(self) -> bool:
        """Nothing waiting to be sent and nothing unconfirmed."""
        return not self._outstanding and not self._pending

    @property
    def unconfirmed_ms(self) -> float:
        return self._outstanding_ms

    @property
    def pending_ms(self) -> float:
        return self._pending_bytes / self.bytes_per_ms

    def current_item(self) -> str | None:
        """The item the caller is hearing now (or will hear next)."""
        if self._outstanding:
            return self._outstanding[0].item_id
        if self._pending:
            return self._pending[0][0]
        return None

    def sent_ms(self, item_id: str) -> int:
        return int(self._sent_ms.get(item_id, 0.0))

    def heard_ms(self, item_id: str, now: float) -> int:
        """Milliseconds of `item_id` the caller has heard at `now`, rounded to whole ms."""
        heard = self._confirmed_ms.get(item_id, 0.0)
        if self._outstanding and self._outstanding[0].item_id == item_id:
            first = self._outstanding[0]
            anchor = first.sent_at if self._confirmed_at is None else max(self._confirmed_at, first.sent_at)
            in_flight = sum(c.dur_ms for c in self._outstanding if c.item_id == item_id)
            heard += min(max(0.0, (now - anchor) * 1000.0), in_flight)
        return round(heard)

    # ------------------------------------------------------------------ updates

    def enqueue(self, item_id: str, audio: bytes) -> None:
        """Hold model audio (carrier format) until the lead allows sending it."""
        if not audio:
            return
        room = int(self.MAX_PENDING_MS * self.bytes_per_ms) - self._pending_bytes
        if len(audio) > room:
            self.dropped_bytes += len(audio) - max(room, 0)
            audio = audio[: max(room, 0)]
            if not audio:
                return
        if self._pending and self._pending[-1][0] == item_id:
            self._pending[-1][1].extend(audio)
        else:
            self._pending.append((item_id, bytearray(audio)))
        self._pending_bytes += len(audio)

    def pump(self, now: float) -> list[OutChunk]:
        """Chunks to send now: as many as fit under the lead bound."""
        out: list[OutChunk] = []
        chunk_bytes = self.chunk_ms * self.bytes_per_ms
        while self._pending:
            item_id, buf = self._pending[0]
            n = min(chunk_bytes, len(buf))
            dur = n / self.bytes_per_ms
            if self._outstanding_ms + dur > self.lead_ms + 1e-9:
                break
            payload = bytes(buf[:n])
            del buf[:n]
            self._pending_bytes -= n
            if not buf:
                self._pending.popleft()
            self._mark_seq += 1
            mark = f"sb{self._mark_seq}"
            start = self._sent_ms.get(item_id, 0.0)
            self._sent_ms[item_id] = start + dur
            self._outstanding.append(_Chunk(mark, item_id, start, dur, now))
            self._outstanding_ms += dur
            self.max_unconfirmed_ms = max(self.max_unconfirmed_ms, self._outstanding_ms)
            out.append(OutChunk(item_id, payload, mark))
        return out

    def on_mark(self, name: str, now: float) -> bool:
        """A mark came back. Returns True if it confirmed audio as played.

        Marks return in the order they were sent, so a mark also confirms every chunk before
        it (a carrier may coalesce). Marks that `clear` discarded confirm nothing.
        """
        if name in self._discarded:
            self._discarded.discard(name)
            return False
        if not any(c.mark == name for c in self._outstanding):
            self.unknown_marks += 1
            return False
        while self._outstanding:
            chunk = self._outstanding.popleft()
            self._outstanding_ms -= chunk.dur_ms
            self._confirmed_ms[chunk.item_id] = chunk.start_ms + chunk.dur_ms
            if chunk.mark == name:
                break
        if not self._outstanding:
            self._outstanding_ms = 0.0  # no float drift across a long call
        self._confirmed_at = now
        return True

    def clear(self, now: float) -> Interrupted | None:
        """The carrier is told to drop its buffer: settle what was heard, forget the rest.

        Returns the item that was audible with its heard position, or None if nothing was.
        Outstanding marks become discarded: their echoes (which `clear` triggers) confirm nothing.
        """
        result: Interrupted | None = None
        item = self.current_item()
        if item is not None and self._outstanding:
            heard = self.heard_ms(item, now)
            result = Interrupted(item, heard, self.sent_ms(item))
            self._confirmed_ms[item] = float(heard)
        for chunk in self._outstanding:
            if len(self._discarded) < self.MAX_DISCARDED:
                self._discarded.add(chunk.mark)
        self._outstanding.clear()
        self._outstanding_ms = 0.0
        self.dropped_bytes += self._pending_bytes
        self._pending.clear()
        self._pending_bytes = 0
        self._confirmed_at = now
        return result

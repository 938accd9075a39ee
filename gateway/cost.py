"""Cost ledger: what a call has cost so far, in USD, priced from one price table.

Prices live in one data file, `gateway/prices.toml` (sources named in its header); an operator's
override file of the same format (`SWITCHBOARD_PRICE_FILE`) is merged over it per model and per
key. A typo in an override stops start-up with a `ConfigError` naming the key and the fix,
because a price silently left at its default is a wrong invoice.

Money is `decimal.Decimal` throughout and never rounded inside: token counts times prices per
1M tokens are exact in decimal, so a call's total is exact and sums do not drift. Floats appear
only at the edge (`as_dict`, rounded to 6 decimals, the api-rules.md `cost` shape).

Reading of Realtime usage (`response.done.response.usage`, protocols.md §3): the per-modality
input counts INCLUDE the cached tokens, and `cached_tokens_details` says which of them were
cached. So uncached text = `input_token_details.text_tokens - cached_tokens_details.text_tokens`
(likewise audio). The protocols.md example proves it: `total_tokens` 1090 equals
`input_tokens` 950 + `output_tokens` 140, so the 640 cached tokens are part of the 950 and not
on top of them; and each cached part fits inside its modality (600 ≤ 700 text, 40 ≤ 250 audio).
Cached tokens not split by modality (no details) are priced as uncached: a little too high,
never too low.

A price that is missing never ends a call: the item is priced at 0, flagged `unpriced`, and a
warning is logged once per model and price key, so the dashboard shows the gap.

Every `add_*` method returns the items it added, so the runtime can forward exactly those to
the live `CostAggregator` (per call, per agent, per campaign).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.config import ConfigError
from gateway.events import Usage

__all__ = [
    "CarrierPrices",
    "CostAggregator",
    "CostItem",
    "CostLedger",
    "ModelPrices",
    "PriceTable",
    "default_prices",
    "price_realtime_usage",
    "price_usage",
    "usd_float",
]

log = structlog.get_logger("switchboard.cost")

# Prices are quoted with at most a few decimals, token counts are integers: with 34 digits of
# precision every product and sum below is exact. Using our own context keeps a caller's
# `decimal.getcontext()` changes from leaking into money.
_CTX = Context(prec=34, rounding=ROUND_HALF_EVEN)
_MILLION = Decimal(1_000_000)
_SIXTY = Decimal(60)
_ZERO = Decimal(0)
_USD_QUANTUM = Decimal("0.000001")

Unit = Literal["tokens", "seconds", "characters", "minutes"]
Direction = Literal["inbound", "outbound"]

# --------------------------------------------------------------------------- the price table

MODEL_SECTIONS = ("realtime", "transcription", "tts")
CARRIER_SECTION = "carrier"


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """One model's prices. Token prices are USD per 1M tokens; `None` = not priced."""

    audio_in: Decimal | None = None
    cached_audio_in: Decimal | None = None
    audio_out: Decimal | None = None
    text_in: Decimal | None = None
    cached_text_in: Decimal | None = None
    text_out: Decimal | None = None
    image_in: Decimal | None = None
    per_minute: Decimal | None = None  # USD per minute of audio (transcription, TTS estimate)
    per_1m_characters: Decimal | None = None  # USD per 1M input characters (tts-1, tts-1-hd)


@dataclass(frozen=True, slots=True)
class CarrierPrices:
    """One carrier's per-minute rates and billing granularity."""

    inbound_per_minute: Decimal = _ZERO
    outbound_per_minute: Decimal = _ZERO
    media_stream_per_minute: Decimal = _ZERO
    # Calls are billed in whole increments, rounded up: 60 = per started minute (Twilio).
    billing_increment_s: int = 60


_MODEL_KEYS = tuple(f.name for f in fields(ModelPrices))
_CARRIER_KEYS = tuple(f.name for f in fields(CarrierPrices))
# A dated snapshot (`gpt-realtime-2025-08-28`) is priced like its alias when not listed itself.
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _toml_key(*parts: str) -> str:
    """A dotted TOML key as the operator would write it: `realtime."gpt-realtime-2.1".audio_in`."""
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in parts)


def _price(value: Any, key: str, source: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ConfigError(
            key, f"{value!r} in {source} is not a number", "use a price in USD such as 4.00 (no quotes)"
        )
    price = Decimal(value)
    if not price.is_finite() or price < 0:
        raise ConfigError(key, f"{value} in {source} is not a price", "use a price of 0 or more, e.g. 4.00")
    return price


def _increment(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            key,
            f"{value!r} in {source} is not a whole number of seconds",
            "use 60 (per started minute), 6 or 1 (per second)",
        )
    return value


def _table(value: Any, key: str, source: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a table in {source}", f"write it as [{key}] with {what} inside")
    return value


class PriceTable:
    """Prices per model and per carrier; build with `default()`, `load()` or `from_toml()`.

    Immutable apart from a record of which missing prices were already warned about.
    """

    def __init__(
        self,
        models: Mapping[str, tuple[str, ModelPrices]],
        carriers: Mapping[str, CarrierPrices],
        *,
        source: str = "",
    ) -> None:
        self._models = dict(models)  # name -> (section, prices)
        self._carriers = dict(carriers)
        self.source = source
        self._warned: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ building

    @classmethod
    def default(cls) -> PriceTable:
        """The packaged `gateway/prices.toml`."""
        text = resources.files("gateway").joinpath("prices.toml").read_text(encoding="utf-8")
        return cls.from_toml(text, source="gateway/prices.toml")

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceTable:
        """The packaged table, with `override` (a file of the same format) merged over it."""
        table = cls.default()
        if override is None:
            return table
        path = Path(override)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "SWITCHBOARD_PRICE_FILE",
                f"cannot read {path} ({exc.strerror or exc})",
                "point it at a readable TOML file in the format of gateway/prices.toml",
            ) from exc
        return cls.from_toml(text, source=str(path), base=table)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>", base: PriceTable | None = None) -> PriceTable:
        """Parse a price file; entries override `base` per model and per key."""
        try:
            # Decimal, not float: 0.40 must stay 0.40, not 0.4000000000000000222.
            data = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                source, f"not valid TOML ({exc})", "fix the syntax; see gateway/prices.toml"
            ) from exc
        models = dict(base._models) if base else {}
        carriers = dict(base._carriers) if base else {}
        allowed_sections = (*MODEL_SECTIONS, CARRIER_SECTION)
        for section, body in data.items():
            if section not in allowed_sections:
                raise ConfigError(
                    _toml_key(section),
                    f"unknown section in {source}",
                    f'use one of [{"], [".join(allowed_sections)}], e.g. [realtime."gpt-realtime"]',
                )
            entries = _table(body, section, source, "one sub-table per model or carrier")
            for name, entry in entries.items():
                entry_key = _toml_key(section, name)
                values = _table(entry, entry_key, source, "prices")
                if section == CARRIER_SECTION:
                    carriers[name] = cls._carrier(values, carriers.get(name), section, name, source)
                else:
                    previous = models.get(name)
                    if previous is not None and previous[0] != section:
                        raise ConfigError(
                            entry_key,
                            f"{name} is priced under [{previous[0]}], not [{section}]",
                            f"override it as [{_toml_key(previous[0], name)}]",
                        )
                    prices = cls._model(values, previous[1] if previous else None, section, name, source)
                    models[name] = (section, prices)
        return cls(models, carriers, source=source if base is None else f"{base.source} + {source}")

    @staticmethod
    def _model(
        values: Mapping[str, Any], previous: ModelPrices | None, section: str, name: str, source: str
    ) -> ModelPrices:
        merged: dict[str, Decimal | None] = {
            key: getattr(previous, key) if previous else None for key in _MODEL_KEYS
        }
        for key, value in values.items():
            full = _toml_key(section, name, key)
            if key not in _MODEL_KEYS:
                raise ConfigError(
                    full, f"unknown price key in {source}", f"use one of {', '.join(_MODEL_KEYS)}"
                )
            merged[key] = _price(value, full, source)
        return ModelPrices(**merged)

    @staticmethod
    def _carrier(
        values: Mapping[str, Any], previous: CarrierPrices | None, section: str, name: str, source: str
    ) -> CarrierPrices:
        current = previous or CarrierPrices()
        merged: dict[str, Any] = {key: getattr(current, key) for key in _CARRIER_KEYS}
        for key, value in values.items():
            full = _toml_key(section, name, key)
            if key not in _CARRIER_KEYS:
                raise ConfigError(
                    full, f"unknown carrier key in {source}", f"use one of {', '.join(_CARRIER_KEYS)}"
                )
            merged[key] = (
                _increment(value, full, source)
                if key == "billing_increment_s"
                else _price(value, full, source)
            )
        return CarrierPrices(**merged)

    # ------------------------------------------------------------------ lookups

    def model(self, name: str) -> ModelPrices | None:
        """Prices of `name`, or of its alias when `name` is a dated snapshot; None if unknown."""
        found = self._models.get(name)
        if found is None and _SNAPSHOT.search(name):
            found = self._models.get(_SNAPSHOT.sub("", name))
        return found[1] if found else None

    def carrier(self, name: str) -> CarrierPrices | None:
        return self._carriers.get(name)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self._models)

    @property
    def carrier_names(self) -> tuple[str, ...]:
        return tuple(self._carriers)

    def warn_missing(self, model: str, key: str) -> None:
        """Log a missing price once per (model, key): a call never fails over a price."""
        if (model, key) in self._warned:
            return
        self._warned.add((model, key))
        log.warning(
            "price_missing",
            model=model,
            price_key=key,
            fix=f"add {key} for {model} in SWITCHBOARD_PRICE_FILE (format of gateway/prices.toml)",
        )


@cache
def default_prices() -> PriceTable:
    """The packaged price table, parsed once per process."""
    return PriceTable.default()


# --------------------------------------------------------------------------- items


def _dec(value: int | float | Decimal, what: str) -> Decimal:
    """An exact Decimal from a count or duration. Floats go through `repr` (0.1 -> 0.1, not 0.1000…55)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number, got {value!r}")
    result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not result.is_finite() or result < 0:
        raise ValueError(f"{what} must be a finite number ≥ 0, got {value!r}")
    return result


def usd_float(amount: Decimal) -> float:
    """A USD amount for JSON: rounded half-even to 6 decimals (api-rules.md: ≥ 6 decimals kept)."""
    return float(amount.quantize(_USD_QUANTUM, rounding=ROUND_HALF_EVEN, context=_CTX))


def _quantity_json(quantity: Decimal) -> int | float:
    if quantity == quantity.to_integral_value():
        return int(quantity)
    return float(quantity)


@dataclass(frozen=True, slots=True)
class CostItem:
    """One priced line: `quantity` of `unit` (tokens, seconds, characters, minutes) for `usd`.

    `kind` says what was bought (`model_audio_in`, `stt_audio`, `carrier_minutes`, …), `model`
    by whom (a model name, or `carrier:direction` for minutes). `unpriced` marks a line whose
    price was missing from the table (its `usd` is 0).
    """

    kind: str
    model: str
    unit: Unit
    quantity: Decimal
    usd: Decimal
    unpriced: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "model": self.model,
            self.unit: _quantity_json(self.quantity),
            "usd": usd_float(self.usd),
        }
        if self.unpriced:
            out["unpriced"] = True
        return out


def _per_million(quantity: Decimal, price: Decimal) -> Decimal:
    return _CTX.divide(_CTX.multiply(quantity, price), _MILLION)


def _per_minute(seconds: Decimal, price: Decimal) -> Decimal:
    return _CTX.divide(_CTX.multiply(seconds, price), _SIXTY)


def _token_item(
    table: PriceTable,
    prices: ModelPrices | None,
    model: str,
    kind: str,
    tokens: int,
    key: str,
    fallback: str | None = None,
) -> CostItem:
    price: Decimal | None = getattr(prices, key) if prices else None
    if price is None and fallback is not None and prices is not None:
        # No cached price listed: bill cached tokens at the full price (too high, never too low).
        price = getattr(prices, fallback)
    quantity = Decimal(tokens)
    if price is None:
        table.warn_missing(model, key)
        return CostItem(kind, model, "tokens", quantity, _ZERO, unpriced=True)
    return CostItem(kind, model, "tokens", quantity, _per_million(quantity, price))


def price_usage(
    model: str, usage: Usage, *, prices: PriceTable | None = None, kind_prefix: str = "model"
) -> list[CostItem]:
    """Price one token `Usage` (see the module docstring for how cached tokens are read).

    `kind_prefix` names the service: `model` for Realtime responses, `stt` for token-billed
    transcription, `tts` for token-billed speech (gpt-4o-mini-tts). Zero counts give no item.
    """
    table = prices or default_prices()
    found = table.model(model)

    def split(total: int, cached: int) -> tuple[int, int]:
        # Cached is a part of total; clamp a malformed report instead of pricing negative tokens.
        cached = min(max(cached, 0), max(total, 0))
        return max(total, 0) - cached, cached

    text, text_cached = split(usage.input_text_tokens, usage.cached_text_tokens)
    audio, audio_cached = split(usage.input_audio_tokens, usage.cached_audio_tokens)
    # `Usage` does not carry cached image tokens, and cached tokens not split by modality
    # cannot be placed: both are priced as uncached (too high, never too low).
    image = max(usage.input_image_tokens, 0)
    p = kind_prefix
    lines: list[tuple[str, int, str, str | None]] = [
        (f"{p}_text_in", text, "text_in", None),
        (f"{p}_text_in_cached", text_cached, "cached_text_in", "text_in"),
        (f"{p}_audio_in", audio, "audio_in", None),
        (f"{p}_audio_in_cached", audio_cached, "cached_audio_in", "audio_in"),
        (f"{p}_image_in", image, "image_in", None),
        (f"{p}_text_out", max(usage.output_text_tokens, 0), "text_out", None),
        (f"{p}_audio_out", max(usage.output_audio_tokens, 0), "audio_out", None),
    ]
    return [
        _token_item(table, found, model, kind, tokens, key, fallback)
        for kind, tokens, key, fallback in lines
        if tokens > 0
    ]


def price_realtime_usage(model: str, usage: Usage, *, prices: PriceTable | None = None) -> list[CostItem]:
    """Price one Realtime `response.done` usage for `model`."""
    return price_usage(model, usage, prices=prices, kind_prefix="model")


# --------------------------------------------------------------------------- ledger


@dataclass(slots=True)
class _Line:
    unit: Unit
    quantity: Decimal
    usd: Decimal
    unpriced: bool


class CostLedger:
    """The running cost of one call.

    Lines are kept summed per (kind, model), so memory stays bounded however long the call:
    `items` is one line per kind and model, and `total` is their exact sum.
    """

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or default_prices()
        self._lines: dict[tuple[str, str], _Line] = {}
        self._carrier_billed_s: dict[tuple[str, str], int] = {}
        self._total = _ZERO

    # ------------------------------------------------------------------ adding

    def add_items(self, items: Iterable[CostItem]) -> list[CostItem]:
        """Add already priced items (all `add_*` methods end here); returns them."""
        added = list(items)
        for item in added:
            line = self._lines.get((item.kind, item.model))
            if line is None:
                self._lines[(item.kind, item.model)] = _Line(
                    item.unit, item.quantity, item.usd, item.unpriced
                )
            else:
                if line.unit != item.unit:
                    raise ValueError(f"{item.kind}/{item.model}: unit {item.unit} does not match {line.unit}")
                line.quantity = _CTX.add(line.quantity, item.quantity)
                line.usd = _CTX.add(line.usd, item.usd)
                line.unpriced = line.unpriced or item.unpriced
            self._total = _CTX.add(self._total, item.usd)
        return added

    def add_usage(self, model: str, usage: Usage, *, kind_prefix: str = "model") -> list[CostItem]:
        """One `response.done` usage (or token-billed STT/TTS usage with `kind_prefix`)."""
        return self.add_items(price_usage(model, usage, prices=self.prices, kind_prefix=kind_prefix))

    def add_stt(self, model: str, seconds: float | int | Decimal) -> list[CostItem]:
        """`seconds` of audio transcribed by `model`, at its `per_minute` price."""
        quantity = _dec(seconds, "seconds")
        found = self.prices.model(model)
        price = found.per_minute if found else None
        if price is None:
            self.prices.warn_missing(model, "per_minute")
            return self.add_items([CostItem("stt_audio", model, "seconds", quantity, _ZERO, unpriced=True)])
        return self.add_items(
            [CostItem("stt_audio", model, "seconds", quantity, _per_minute(quantity, price))]
        )

    def add_tts(
        self, model: str, *, characters: int | None = None, seconds: float | int | Decimal | None = None
    ) -> list[CostItem]:
        """Speech from `model`: by `characters` (tts-1, tts-1-hd) or by `seconds` (per-minute estimate).

        Token-billed speech (gpt-4o-mini-tts with a usage report) goes through
        `add_usage(model, usage, kind_prefix="tts")` instead.
        """
        if (characters is None) == (seconds is None):
            raise ValueError("add_tts takes exactly one of characters= or seconds=")
        found = self.prices.model(model)
        unit: Unit
        if characters is not None:
            quantity, unit, key = _dec(characters, "characters"), "characters", "per_1m_characters"
            price = found.per_1m_characters if found else None
            usd = _per_million(quantity, price) if price is not None else _ZERO
        else:
            assert seconds is not None
            quantity, unit, key = _dec(seconds, "seconds"), "seconds", "per_minute"
            price = found.per_minute if found else None
            usd = _per_minute(quantity, price) if price is not None else _ZERO
        if price is None:
            self.prices.warn_missing(model, key)
        item = CostItem("tts", model, unit, quantity, usd, unpriced=price is None)
        return self.add_items([item])

    def add_carrier(
        self,
        carrier: str,
        direction: Direction,
        duration_s: float | int | Decimal,
        *,
        rate_per_minute: Decimal | float | None = None,
    ) -> list[CostItem]:
        """Carrier minutes for a call that has lasted `duration_s` so far (not an increment).

        Billed time is `duration_s` rounded UP to the carrier's `billing_increment_s` (Twilio:
        every started minute is billed whole, support article "How do you round minutes for
        billing"). Call it on every tick for a live figure, or once at the end: only the newly
        billed increments are added and returned, so nothing is counted twice. A shorter
        duration than before adds nothing. `rate_per_minute` overrides the table's rate for
        the direction (the media-stream surcharge still comes from the table).
        """
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be inbound or outbound, got {direction!r}")
        seconds = _dec(duration_s, "duration_s")
        prices = self.prices.carrier(carrier)
        name = f"{carrier}:{direction}"
        if prices is None and rate_per_minute is None:
            self.prices.warn_missing(carrier, f"{direction}_per_minute")
        increment = prices.billing_increment_s if prices else 60
        blocks = _CTX.divide(seconds, Decimal(increment)).to_integral_value(rounding=ROUND_CEILING)
        billed_s = int(blocks) * increment
        previous_s = self._carrier_billed_s.get((carrier, direction), 0)
        if billed_s <= previous_s:
            return []
        self._carrier_billed_s[(carrier, direction)] = billed_s
        minutes = _CTX.divide(Decimal(billed_s - previous_s), _SIXTY)
        if rate_per_minute is not None:
            rate: Decimal | None = _dec(rate_per_minute, "rate_per_minute")
        elif prices is not None:
            rate = prices.inbound_per_minute if direction == "inbound" else prices.outbound_per_minute
        else:
            rate = None
        items = [
            CostItem(
                "carrier_minutes",
                name,
                "minutes",
                minutes,
                _CTX.multiply(minutes, rate) if rate is not None else _ZERO,
                unpriced=rate is None,
            )
        ]
        if prices is not None and prices.media_stream_per_minute > 0:
            usd = _CTX.multiply(minutes, prices.media_stream_per_minute)
            items.append(CostItem("carrier_media_stream", carrier, "minutes", minutes, usd))
        return self.add_items(items)

    # ------------------------------------------------------------------ reading

    @property
    def total(self) -> Decimal:
        """The exact running total in USD."""
        return self._total

    @property
    def unpriced(self) -> bool:
        """True if any line had no price (its cost is missing from `total`)."""
        return any(line.unpriced for line in self._lines.values())

    @property
    def items(self) -> list[CostItem]:
        """One summed item per (kind, model), in the order first seen."""
        return [
            CostItem(kind, model, line.unit, line.quantity, line.usd, line.unpriced)
            for (kind, model), line in self._lines.items()
        ]

    def as_dict(self) -> dict[str, Any]:
        """The api-rules.md `cost` shape: `{"currency": "USD", "total": …, "items": [...]}`."""
        out: dict[str, Any] = {
            "currency": "USD",
            "total": usd_float(self._total),
            "items": [item.as_dict() for item in self.items],
        }
        if self.unpriced:
            out["unpriced"] = True
        return out


# --------------------------------------------------------------------------- aggregation


class CostAggregator:
    """Live running totals across calls: per call, per agent, per campaign.

    Each `add` is attributed to the agent and campaign given with it, so after a handoff the
    new cost counts toward the new agent. Agent and campaign totals live for the process
    (a handful of keys); `end_call` drops a finished call from the per-call view.
    """

    def __init__(self) -> None:
        self._calls: dict[str, Decimal] = {}
        self._agents: dict[str, Decimal] = {}
        self._campaigns: dict[str, Decimal] = {}

    def add(
        self, call_id: str, agent: str | None, campaign: str | None, items: Iterable[CostItem]
    ) -> Decimal:
        """Add a call's new items; returns the call's running total."""
        amount = _ZERO
        for item in items:
            amount = _CTX.add(amount, item.usd)
        total = _CTX.add(self._calls.get(call_id, _ZERO), amount)
        self._calls[call_id] = total
        if agent is not None:
            self._agents[agent] = _CTX.add(self._agents.get(agent, _ZERO), amount)
        if campaign is not None:
            self._campaigns[campaign] = _CTX.add(self._campaigns.get(campaign, _ZERO), amount)
        return total

    def end_call(self, call_id: str) -> None:
        """Forget a finished call's live total (its cost stays in agent and campaign totals)."""
        self._calls.pop(call_id, None)

    def call_total(self, call_id: str) -> Decimal:
        return self._calls.get(call_id, _ZERO)

    def totals_by_call(self) -> dict[str, Decimal]:
        return dict(self._calls)

    def totals_by_agent(self) -> dict[str, Decimal]:
        return dict(self._agents)

    def totals_by_campaign(self) -> dict[str, Decimal]:
        return dict(self._campaigns)

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the REST API and metrics."""
        return {
            "currency": "USD",
            "calls": {k: usd_float(v) for k, v in self._calls.items()},
            "agents": {k: usd_float(v) for k, v in self._agents.items()},
            "campaigns": {k: usd_float(v) for k, v in self._campaigns.items()},
        }

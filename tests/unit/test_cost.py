"""Cost ledger: usage priced by hand equals the ledger; overrides, errors and missing prices."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import ConfigError
from gateway.cost import (
    CostAggregator,
    CostItem,
    CostLedger,
    PriceTable,
    default_prices,
    price_realtime_usage,
)
from gateway.events import Usage

# The `usage` of response.done in shared/reference/protocols.md §3.
PROTOCOLS_USAGE = Usage(
    input_text_tokens=700,
    input_audio_tokens=250,
    input_image_tokens=0,
    cached_tokens=640,
    cached_text_tokens=600,
    cached_audio_tokens=40,
    output_text_tokens=30,
    output_audio_tokens=110,
    total_tokens=1090,
)


def test_protocols_example_priced_by_hand_for_gpt_realtime() -> None:
    # gpt-realtime, USD per 1M tokens: text in 4, cached text 0.40, audio in 32, cached audio 0.40,
    # text out 16, audio out 64. Cached tokens are part of the input counts (1090 = 950 + 140):
    #   text in, uncached   (700 - 600) = 100 × 4.00 / 1e6 = 0.000400
    #   text in, cached            600 × 0.40 / 1e6 = 0.000240
    #   audio in, uncached  (250 -  40) = 210 × 32.0 / 1e6 = 0.006720
    #   audio in, cached            40 × 0.40 / 1e6 = 0.000016
    #   text out                    30 × 16.0 / 1e6 = 0.000480
    #   audio out                  110 × 64.0 / 1e6 = 0.007040
    #   total                                         0.014896
    ledger = CostLedger()
    ledger.add_usage("gpt-realtime", PROTOCOLS_USAGE)
    assert ledger.total == Decimal("0.014896")  # exact, so right to 6 decimals and beyond
    assert round(ledger.total, 2) == Decimal("0.01")  # and to the cent
    by_kind = {item.kind: (int(item.quantity), item.usd) for item in ledger.items}
    assert by_kind == {
        "model_text_in": (100, Decimal("0.0004")),
        "model_text_in_cached": (600, Decimal("0.00024")),
        "model_audio_in": (210, Decimal("0.00672")),
        "model_audio_in_cached": (40, Decimal("0.000016")),
        "model_text_out": (30, Decimal("0.00048")),
        "model_audio_out": (110, Decimal("0.00704")),
    }
    cost = ledger.as_dict()
    assert cost["currency"] == "USD"
    assert cost["total"] == 0.014896
    assert cost["items"][2] == {
        "kind": "model_audio_in",
        "model": "gpt-realtime",
        "tokens": 210,
        "usd": 0.00672,
    }
    assert "unpriced" not in cost


def test_price_realtime_usage_is_the_ledgers_pricing() -> None:
    items = price_realtime_usage("gpt-realtime", PROTOCOLS_USAGE)
    assert sum((i.usd for i in items), Decimal(0)) == Decimal("0.014896")
    # gpt-realtime-2 differs only in text out (24 instead of 16): 30 × 8 / 1e6 more.
    items2 = price_realtime_usage("gpt-realtime-2", PROTOCOLS_USAGE)
    assert sum((i.usd for i in items2), Decimal(0)) == Decimal("0.014896") + Decimal("0.00024")


def test_scripted_call_equals_hand_computed_figure_to_the_cent() -> None:
    # A 2 min 5 s inbound Twilio call on gpt-realtime-2.1-mini with mini transcription.
    # Prices (gpt-realtime-2.1-mini, per 1M): text in 0.60, cached text 0.06, audio in 10,
    # cached audio 0.30, text out 2.40, audio out 20.
    responses = [
        # greeting: instructions only, spoken answer
        Usage(input_text_tokens=500, output_text_tokens=20, output_audio_tokens=240),
        # turn 1: caller audio; most of the prefix is cached
        Usage(
            input_text_tokens=560,
            input_audio_tokens=300,
            cached_tokens=512,
            cached_text_tokens=480,
            cached_audio_tokens=32,
            output_text_tokens=40,
            output_audio_tokens=600,
        ),
        # turn 2: longer history, more cached
        Usage(
            input_text_tokens=640,
            input_audio_tokens=900,
            cached_tokens=1024,
            cached_text_tokens=560,
            cached_audio_tokens=464,
            output_text_tokens=25,
            output_audio_tokens=360,
        ),
    ]
    # text in    (500 + 80 + 80) = 660 × 0.60 = 396.0   → 0.000396
    # cached txt (480 + 560)    = 1040 × 0.06 =  62.4   → 0.0000624
    # audio in   (268 + 436)    =  704 × 10   = 7040    → 0.00704
    # cached aud (32 + 464)     =  496 × 0.30 = 148.8   → 0.0001488
    # text out   (20 + 40 + 25) =   85 × 2.40 = 204     → 0.000204
    # audio out  (240+600+360)  = 1200 × 20   = 24000   → 0.024
    # model subtotal                                      0.0318512
    # STT: 95 s of caller audio, gpt-4o-mini-transcribe 0.003/min → 95/60 × 0.003 = 0.00475
    # Carrier: 125 s inbound, Twilio bills 3 started minutes × 0.0085 = 0.0255
    # Total 0.0318512 + 0.00475 + 0.0255 = 0.0621012 → $0.06
    ledger = CostLedger()
    for usage in responses:
        ledger.add_usage("gpt-realtime-2.1-mini", usage)
    ledger.add_stt("gpt-4o-mini-transcribe", 95)
    for elapsed in (10, 59, 60, 61, 125):  # ticks during the call: only new minutes are added
        ledger.add_carrier("twilio", "inbound", elapsed)
    assert round(ledger.total, 2) == Decimal("0.06")
    assert ledger.total == Decimal("0.0621012")
    assert ledger.as_dict()["total"] == 0.062101
    minutes = [i for i in ledger.items if i.kind == "carrier_minutes"]
    assert minutes == [
        CostItem("carrier_minutes", "twilio:inbound", "minutes", Decimal(3), Decimal("0.0255"))
    ]


def test_carrier_minutes_round_up_per_started_minute_and_honour_a_rate() -> None:
    ledger = CostLedger()
    assert ledger.add_carrier("twilio", "outbound", 0) == []  # never answered: nothing billed
    [item] = ledger.add_carrier("twilio", "outbound", 1)
    assert (item.quantity, item.usd) == (Decimal(1), Decimal("0.013"))
    assert ledger.add_carrier("twilio", "outbound", 60) == []
    assert ledger.add_carrier("twilio", "outbound", 30) == []  # time does not run backwards
    other = CostLedger()
    [item] = other.add_carrier("sip", "inbound", 61, rate_per_minute=Decimal("0.01"))
    assert (item.quantity, item.usd) == (Decimal(2), Decimal("0.02"))
    with pytest.raises(ValueError, match="direction"):
        other.add_carrier("twilio", "sideways", 10)  # type: ignore[arg-type]


def test_tts_by_characters_and_by_seconds() -> None:
    ledger = CostLedger()
    ledger.add_tts("tts-1", characters=2000)  # 2000 × 15 / 1e6 = 0.03
    ledger.add_tts("gpt-4o-mini-tts", seconds=30)  # 30/60 × 0.015 = 0.0075
    ledger.add_usage(
        "gpt-4o-mini-tts", Usage(input_text_tokens=1000, output_audio_tokens=1000), kind_prefix="tts"
    )  # 1000 × 0.60 / 1e6 + 1000 × 12 / 1e6 = 0.0006 + 0.012
    assert ledger.total == Decimal("0.03") + Decimal("0.0075") + Decimal("0.0126")
    assert {i.kind for i in ledger.items} == {"tts", "tts_text_in", "tts_audio_out"}
    with pytest.raises(ValueError, match="exactly one"):
        ledger.add_tts("tts-1")


def test_override_file_changes_a_price_and_keeps_the_rest(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        '[realtime."gpt-realtime"]\naudio_out = 50.0\n\n'
        '[realtime."my-realtime"]\naudio_in = 1.0\n\n'
        "[carrier.twilio]\ninbound_per_minute = 0.02\nbilling_increment_s = 1\n"
    )
    table = PriceTable.load(override)
    prices = table.model("gpt-realtime")
    assert prices is not None
    assert prices.audio_out == Decimal("50.0")
    assert prices.audio_in == Decimal("32.00")  # untouched keys keep the defaults
    assert table.model("my-realtime") is not None
    ledger = CostLedger(table)
    ledger.add_usage("gpt-realtime", Usage(output_audio_tokens=1000))  # 1000 × 50 / 1e6
    assert ledger.total == Decimal("0.05")
    [item] = ledger.add_carrier("twilio", "inbound", 90)  # per second now: 1.5 min × 0.02
    assert item.usd == Decimal("0.03")
    # The packaged default is unchanged.
    assert default_prices().model("gpt-realtime").audio_out == Decimal("64.00")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ('[realtime."gpt-realtime"]\naudio_inn = 1.0\n', "realtime.gpt-realtime.audio_inn", "audio_in"),
        (
            '[realtime."gpt-realtime-2.1"]\ntext_out = "24"\n',
            'realtime."gpt-realtime-2.1".text_out',
            "no quotes",
        ),
        ('[realtime."gpt-realtime"]\ntext_out = -1.0\n', "realtime.gpt-realtime.text_out", "0 or more"),
        ("[models.x]\naudio_in = 1.0\n", "models", "[realtime]"),
        ("[carrier.twilio]\ninbound = 0.01\n", "carrier.twilio.inbound", "inbound_per_minute"),
        ("[carrier.twilio]\nbilling_increment_s = 0\n", "carrier.twilio.billing_increment_s", "60"),
        ('[tts."gpt-realtime"]\nper_minute = 1.0\n', "tts.gpt-realtime", "[realtime.gpt-realtime]"),
        ("[realtime.x\n", "bad.toml", "syntax"),
    ],
)
def test_malformed_override_names_the_key_and_the_fix(tmp_path: Path, text: str, key: str, fix: str) -> None:
    override = tmp_path / "bad.toml"
    override.write_text(text)
    with pytest.raises(ConfigError) as info:
        PriceTable.load(override)
    assert key in info.value.key
    assert key in str(info.value)
    assert fix in info.value.fix


def test_missing_override_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable.load(tmp_path / "nope.toml")
    assert info.value.key == "SWITCHBOARD_PRICE_FILE"


def test_unknown_model_is_flagged_zero_and_warned_once() -> None:
    table = PriceTable.default()
    ledger = CostLedger(table)
    with capture_logs() as logs:
        first = ledger.add_usage("gpt-future", PROTOCOLS_USAGE)
        ledger.add_usage("gpt-future", PROTOCOLS_USAGE)
        ledger.add_stt("no-such-stt", 10)
        ledger.add_carrier("acme", "inbound", 61)
    assert first and all(item.unpriced and item.usd == 0 for item in first)
    assert ledger.total == 0
    assert ledger.unpriced
    cost = ledger.as_dict()
    assert cost["unpriced"] is True
    assert all(item["unpriced"] for item in cost["items"])
    warned = [(e["model"], e["price_key"]) for e in logs if e["event"] == "price_missing"]
    # One warning per (model, price key), however many responses.
    assert len(warned) == len(set(warned))
    assert ("gpt-future", "audio_in") in warned
    assert ("no-such-stt", "per_minute") in warned
    assert ("acme", "inbound_per_minute") in warned


def test_dated_snapshot_is_priced_like_its_alias() -> None:
    items = price_realtime_usage("gpt-realtime-2025-08-28", Usage(output_audio_tokens=1_000_000))
    assert [(i.usd, i.unpriced) for i in items] == [(Decimal(64), False)]


def test_malformed_usage_is_clamped_not_negative() -> None:
    # More cached than input (a server bug) must not produce negative money.
    items = price_realtime_usage("gpt-realtime", Usage(input_text_tokens=10, cached_text_tokens=50))
    assert all(i.usd >= 0 for i in items)
    assert [(i.kind, int(i.quantity)) for i in items] == [("model_text_in_cached", 10)]


def test_packaged_table_has_the_documented_models_and_parses_as_decimal() -> None:
    table = default_prices()
    for name in (
        "gpt-realtime",
        "gpt-realtime-2",
        "gpt-realtime-2.1",
        "gpt-realtime-2.1-mini",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "whisper-1",
        "gpt-4o-mini-tts",
        "tts-1",
        "tts-1-hd",
    ):
        assert table.model(name) is not None, name
    mini = table.model("gpt-realtime-2.1-mini")
    assert mini is not None
    assert mini.cached_text_in == Decimal("0.06")  # not 0.059999…, prices are read as Decimal
    assert table.carrier("twilio") is not None


def test_aggregator_keeps_live_totals_per_call_agent_and_campaign() -> None:
    agg = CostAggregator()
    a, b = CostLedger(), CostLedger()
    agg.add("c1", "front_desk", "spring", a.add_usage("gpt-realtime", PROTOCOLS_USAGE))
    agg.add("c2", "front_desk", None, b.add_usage("gpt-realtime", PROTOCOLS_USAGE))
    # After a handoff, c1's new cost counts toward the new agent.
    total = agg.add("c1", "billing", "spring", a.add_carrier("twilio", "inbound", 30))
    assert total == a.total == agg.call_total("c1")
    assert agg.totals_by_agent() == {
        "front_desk": Decimal("0.014896") * 2,
        "billing": Decimal("0.0085"),
    }
    assert agg.totals_by_campaign() == {"spring": a.total}
    agg.end_call("c1")
    assert set(agg.totals_by_call()) == {"c2"}
    assert agg.totals_by_campaign() == {"spring": a.total}  # history stays
    assert agg.as_dict()["agents"]["billing"] == 0.0085

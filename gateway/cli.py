"""`switchboard` command line: `serve` runs the gateway, `demo` calls it with a simulated caller."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.config import ConfigError, Settings, load_settings, require_for_serving
from gateway.logging import configure_logging


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(config_file=args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = Settings(**{**_asdict(settings), **overrides})
    return settings


def _asdict(settings: Settings) -> dict[str, object]:
    return {f: getattr(settings, f) for f in settings.__dataclass_fields__}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings = _settings(args)
    require_for_serving(settings)
    configure_logging(settings.log_level, settings.log_format)
    if not settings.openai_api_key and settings.backend == "auto":
        print(
            "switchboard: OPENAI_API_KEY is not set, so calls are answered by the offline backend "
            "(local speech recognition, a rule-based agent, local speech synthesis).",
            file=sys.stderr,
        )
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ws_ping_interval=None)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.app import load_carriers

    settings = _settings(args)
    # The demo prints its own transcript; the gateway's log lines would drown it.
    configure_logging("warning", "console")
    # The simulated caller speaks a carrier's protocol, so the demo lives with a carrier.
    for plugin in load_carriers(settings.carriers):
        demo = getattr(plugin, "demo", None)
        if demo is not None:
            code: int = demo(settings, wav=args.wav, seconds=args.seconds)
            return code
    print("switchboard demo: no configured carrier offers a demo (SWITCHBOARD_CARRIERS)", file=sys.stderr)
    return 2


def cmd_calls(args: argparse.Namespace) -> int:
    """`switchboard calls list|show`: the REST API's records, as JSON or a readable view."""
    import json
    import os

    import httpx

    headers = {}
    token = os.environ.get("SWITCHBOARD_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if args.action == "show" and not args.id:
        print("switchboard: calls show needs a call id", file=sys.stderr)
        return 2
    path = "/calls" if args.action == "list" else f"/calls/{args.id}"
    try:
        resp = httpx.get(args.url.rstrip("/") + path, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"switchboard: cannot reach {args.url} ({type(exc).__name__})", file=sys.stderr)
        return 1
    data = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    if resp.status_code != 200:
        message = data.get("error", {}).get("message", resp.text[:200])
        print(f"switchboard: {resp.status_code} {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.action == "list":
        for c in data["calls"]:
            cost = "" if c.get("cost_usd") is None else f" ${c['cost_usd']:.4f}"
            who = f"{c['from'] or '-':>16} -> {c['to'] or '-':<16}"
            print(f"{c['id']}  {c['state']:<12} {who} {c['agent']}{cost}")
    else:
        print(f"{data['id']}  {data['state']}  {data.get('end_reason') or ''}  agent={data['agent']}")
        for t in data["transcript"]:
            cut = " [interrupted]" if t.get("interrupted") else ""
            print(f"  {t['t_ms'] / 1000:7.1f}s {t['role']:>9}: {t['text']}{cut}")
        if data.get("cost"):
            print(f"  cost: ${data['cost']['total']:.6f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="Telephony voice-bot gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="path to a switchboard.toml file ([switchboard] table)")
    common.add_argument("--host", help="bind address (SWITCHBOARD_HOST)")
    common.add_argument("--port", type=int, help="bind port (SWITCHBOARD_PORT)")
    serve = sub.add_parser("serve", parents=[common], help="run the gateway (Twilio webhooks + media socket)")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser(
        "demo", parents=[common], help="call the gateway in-process with a simulated caller"
    )
    demo.add_argument("--wav", help="what the simulated caller says: a WAV file (any rate, mono/stereo)")
    demo.add_argument("--seconds", type=float, default=20.0, help="hang up after this long (default 20)")
    demo.set_defaults(func=cmd_demo)
    calls = sub.add_parser("calls", help="list or show call records from a running gateway")
    calls.add_argument("action", choices=["list", "show"])
    calls.add_argument("id", nargs="?", help="call id (ours, a Twilio CallSid or a SIP Call-ID) for show")
    calls.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    calls.add_argument("--json", action="store_true", help="print the API's JSON")
    calls.set_defaults(func=cmd_calls)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"switchboard: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

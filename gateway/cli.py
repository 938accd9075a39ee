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
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ws_ping_interval=None)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.app import load_carriers

    settings = _settings(args)
    # The simulated caller speaks a carrier's protocol, so the demo lives with a carrier.
    for plugin in load_carriers(settings.carriers):
        demo = getattr(plugin, "demo", None)
        if demo is not None:
            code: int = demo(settings, wav=args.wav, seconds=args.seconds)
            return code
    print("switchboard demo: no configured carrier offers a demo (SWITCHBOARD_CARRIERS)", file=sys.stderr)
    return 2


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

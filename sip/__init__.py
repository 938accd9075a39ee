"""SIP trunk carrier: our own RFC 3261 subset, SDP offer/answer, RTP and RFC 4733 DTMF.

Sans-I/O cores (`message`, `sdp`, `transaction`, `dialog`, `rtp`, `dtmf`, `auth`, `core`) take
time as an argument and never touch a socket; `endpoint` is the thin asyncio shell, `leg` the
per-call carrier leg, `service` the running carrier, `plugin` what the app mounts
(`SWITCHBOARD_CARRIERS=…,sip` with `SWITCHBOARD_SIP_ENABLED=true`), and `outbound.place_call`
places calls through the trunk.
"""


def __getattr__(name: str) -> object:
    # `plugin` is looked up by the app factory; importing it lazily keeps `import sip` cheap for
    # code that only wants the parser or the SDP helpers.
    if name == "plugin":
        from sip.plugin import plugin

        return plugin
    raise AttributeError(name)

"""Twilio Media Streams carrier: codec, signatures, webhooks, WebSocket endpoint, REST control."""


def __getattr__(name: str) -> object:
    # `plugin` is looked up by the app factory; importing it lazily keeps `import media_streams`
    # cheap for code that only wants the codec.
    if name == "plugin":
        from media_streams.routes import plugin

        return plugin
    raise AttributeError(name)

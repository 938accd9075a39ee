"""Switchboard core: call owner, audio, backends, config, app factory. Carrier-agnostic."""

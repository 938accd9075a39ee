"""Twilio Media Streams carrier: codec, signatures, webhooks, WebSocket endpoint, REST control."""

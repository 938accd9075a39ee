"""Providers the pipeline backend is built from: speech-to-text, agent, text-to-speech.

`base` holds the three small protocols and the shared history types; each other module is
one implementation (OpenAI over HTTP, or local and offline). Modules import their third-party
libraries themselves, so importing this package costs nothing.
"""

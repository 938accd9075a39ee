"""The fake Twilio of the tests is the product's simulated caller (media_streams/simulator.py).

One implementation serves `switchboard demo` and the tests, so the demo exercises what is tested.
"""

from media_streams.simulator import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, Gap, MarkEcho, SimulatedCaller

FakeTwilioCaller = SimulatedCaller

__all__ = ["BYTES_PER_MS", "FRAME_BYTES", "FRAME_MS", "FakeTwilioCaller", "Gap", "MarkEcho"]

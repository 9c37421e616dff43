"""Integration tests against real third-party servers on loopback (moto S3); the emulator fixtures are the
operator tests' (a private emulator per module, ``cloudelements_default`` pointing at it)."""

from tests.operators.conftest import conn, emu

__all__ = ["conn", "emu"]

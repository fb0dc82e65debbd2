"""Random ids in the uuid4 text form, without importing `uuid` (it pulls in `platform` at cold start)."""

from __future__ import annotations

import os


def uuid4() -> str:
    """A random RFC 4122 version-4 UUID as text, e.g. 'c0a8f1d2-6b3e-4f1a-9c2d-0e4b5a6c7d8e'."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

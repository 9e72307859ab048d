"""The start of a compressed body, inflated without ever inflating more than asked.

The httpx transports see a response's body as it came (httpx decodes it for
the caller later), and seawall's classifiers and pricing need it as the
caller will read it. Inflating a whole body to read its start would let a
small "bomb" (8 KiB on the wire, 8 MiB inflated) cost its full size per
error response; ``inflated_start`` never produces more than ``limit`` bytes
at any step, as aiohttp's own reading does for the aiohttp middleware.
"""

from __future__ import annotations

import zlib

__all__ = ["CODINGS_MAX", "inflated_start"]

#: Content codings inflated here, each with its ``zlib`` window bits, tried in turn as
#: httpx does ("deflate" is zlib-wrapped or, failing that, raw).
_INFLATE = {
    "gzip": (zlib.MAX_WBITS | 16,),
    "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS),
}

#: Most codings stacked on one body that are undone (each step may cost ``limit`` bytes
#: of inflating); a body with more is declined.
CODINGS_MAX = 2


def _inflate(wbits: tuple[int, ...], data: bytes, limit: int) -> bytes | None:
    """The first ``limit`` bytes ``data`` inflates to (its start, if ``data`` is cut
    short); ``None`` if it is not what ``wbits`` says. Never inflates more."""
    for bits in wbits:
        try:
            return zlib.decompressobj(bits).decompress(data, limit)
        except zlib.error:
            continue
    return None


def inflated_start(content_encoding: str, raw: bytes, limit: int) -> bytes | None:
    """The first ``limit`` bytes of ``raw``, a body's start sent with ``content_encoding``,
    as they read decoded; ``None`` if they cannot be told.

    gzip and deflate, alone or stacked, are inflated, never past ``limit``
    bytes at any step; the start of a longer body gives what it inflates to.
    Any other coding (br, zstd: their decoders cannot be told to stop), more
    than ``CODINGS_MAX`` codings, and bytes that are not what the header says
    give ``None``.
    """
    codings = [
        c.strip() for c in content_encoding.lower().split(",") if c.strip() not in ("", "identity")
    ]
    if len(codings) > CODINGS_MAX:
        return None
    data = raw
    for coding in reversed(codings):  # the last one applied is undone first
        wbits = _INFLATE.get(coding)
        inflated = None if wbits is None else _inflate(wbits, data, limit)
        if inflated is None:
            return None
        data = inflated
    return data[:limit]

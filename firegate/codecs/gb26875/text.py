"""GB18030 text fields (spec §3 "Text fields"): padding is undefined, so decode leniently."""

from __future__ import annotations

import codecs

from firegate.codecs.gb26875.errors import EncodeError

# Looked up once: `bytes.decode("gb18030")` resolves the codec by name on every call, which costs
# twice the decoding of a 31-byte field. Same codec functions, same results.
_gb18030_decode = codecs.getdecoder("gb18030")
_gb18030_encode = codecs.getencoder("gb18030")


def decode_text(raw: bytes) -> str:
    """Cut at the first NUL, decode GB18030 with replacement, strip trailing spaces."""
    cut = raw.find(0)
    if cut >= 0:
        raw = raw[:cut]
    if raw.isascii():  # GB18030's one-byte range is ASCII
        return raw.decode("ascii").rstrip(" ")
    return _gb18030_decode(raw, "replace")[0].rstrip(" ")


def encode_text(text: str, size: int | None = 31) -> bytes:
    """GB18030 bytes, NUL-padded to `size` (None: variable length up to 255 bytes)."""
    try:
        data: bytes = _gb18030_encode(text)[0]
    except UnicodeEncodeError as e:
        raise EncodeError(f"text cannot be encoded in GB18030: {text!r}", value=text) from e
    limit = 255 if size is None else size
    if len(data) > limit:
        raise EncodeError(
            f"text is {len(data)} bytes in GB18030, the field holds {limit}: {text!r}", value=text
        )
    return data if size is None else data.ljust(size, b"\x00")

"""GB18030 text fields (spec §3 "Text fields"): padding is undefined, so decode leniently."""

from __future__ import annotations

from firegate.codecs.gb26875.errors import EncodeError


def decode_text(raw: bytes) -> str:
    """Cut at the first NUL, decode GB18030 with replacement, strip trailing spaces."""
    cut = raw.find(0)
    if cut >= 0:
        raw = raw[:cut]
    return raw.decode("gb18030", "replace").rstrip(" ")


def encode_text(text: str, size: int | None = 31) -> bytes:
    """GB18030 bytes, NUL-padded to `size` (None: variable length up to 255 bytes)."""
    try:
        data = text.encode("gb18030")
    except UnicodeEncodeError as e:
        raise EncodeError(f"text cannot be encoded in GB18030: {text!r}", value=text) from e
    limit = 255 if size is None else size
    if len(data) > limit:
        raise EncodeError(
            f"text is {len(data)} bytes in GB18030, the field holds {limit}: {text!r}", value=text
        )
    return data if size is None else data.ljust(size, b"\x00")

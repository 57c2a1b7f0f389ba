"""A jsonschema FormatChecker for the formats firegate's schemas use.

jsonschema checks `date-time` only with an optional package; this one checks RFC 3339 strictly
(an offset is required), so that a schema or an example claiming `date-time` for a zone-less
time fails."""

from __future__ import annotations

import re

from jsonschema import FormatChecker

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    return True

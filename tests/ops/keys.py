"""Helpers shared by the ops tests."""

from __future__ import annotations

from pydantic import BaseModel

from firegate.config import Settings


def settings_keys() -> set[str]:
    """Every configuration key as a dotted path (`gb26875.listen`), from the Settings model."""
    keys = set()
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys |= {f"{name}.{sub}" for sub in section.model_fields}
        else:
            keys.add(name)
    return keys

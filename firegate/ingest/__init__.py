"""Ingest: the one protocol-neutral path from the standard's information objects to stored
events, fires first (see pipeline.py)."""

from firegate.ingest.pipeline import Ingest, IngestSettings, NotStoredError, Outcome, Report
from firegate.ingest.priority import Lane, carries_fire, is_fire

__all__ = [
    "Ingest",
    "IngestSettings",
    "Lane",
    "NotStoredError",
    "Outcome",
    "Report",
    "carries_fire",
    "is_fire",
]

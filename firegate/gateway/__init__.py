"""Transport: listeners and sessions. Knows bytes and connections; hands reports to ingest."""

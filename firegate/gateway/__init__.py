"""Transport: listeners and sessions. Knows bytes and connections; hands events to a sink."""

"""firegate: GB/T 26875.3 protocol gateway and event bus for fire-safety remote monitoring centers."""

__version__ = "0.1.0"

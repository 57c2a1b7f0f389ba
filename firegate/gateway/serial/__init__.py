"""Serial lines: fire alarm panels and UITDs on RS-232/485, a device path or a serial device
server (``socket://``, ``rfc2217://``), each line speaking its own dialect.

Kept light: ``firegate.config`` imports the panel models from `config`; the line runners
(`lines`) import serialx and the codecs only where the gateway starts them.
"""

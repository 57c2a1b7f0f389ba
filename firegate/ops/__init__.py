"""Operations: metrics, health and readiness over HTTP, structured logs.

Import the submodules directly; this package imports nothing so that light CLI
commands do not pay for aiohttp.
"""

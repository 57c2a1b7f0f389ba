"""Free loopback ports for the servers tests start (never the machine's own services)."""

from __future__ import annotations

import socket

# the machine's NATS and Mosquitto services, and firegate's own defaults
RESERVED_PORTS = frozenset({1883, 4222, 4223, 8883, 9001, 9108})


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel had free just now. The sockets are held until all are
    chosen, so two of them are never equal; another process may still take one before its
    server binds it, which callers that retry can tolerate."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in RESERVED_PORTS:
                s.close()
            else:
                held.append(s)
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]

"""The running registry: reload, and the allow-list (with source networks) it gives the gateway."""

from __future__ import annotations

from pathlib import Path

from firegate.sites import LiveSites


def test_known_devices_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  A:\n    unit: 甲\n    uitds: [74565]\n    devices: [panel-1]\n"
        "    networks: [10.1.0.0/16]\n  B:\n    unit: 乙\n    uitds: [889]\n",
        encoding="utf-8",
    )
    live = LiveSites(path)
    assert live.known_devices() == {"74565": ["10.1.0.0/16"], "panel-1": ["10.1.0.0/16"], "889": []}
    assert live.site_of("74565") == "A" and live.site_of("5") == "5"
    path.write_text("sites:\n  A:\n    unit: 甲\n    networks: [not-a-network]\n", encoding="utf-8")
    error = live.reload()
    assert error is not None and "networks" in error
    assert live.site_of("889") == "B"  # the previous registry stays in force

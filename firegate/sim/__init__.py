"""UITD simulator and load generator for GB/T 26875.3 centers (`firegate sim`).

`SimulatedUitd` is one device (TCP; `UdpSimulatedUitd` over UDP), `run_load` drives many of them
and returns a `LoadReport`, `sim_main` is the command line.
"""

from firegate.ops.limits import raise_nofile_limit
from firegate.sim.cli import one_alarm, sim_main
from firegate.sim.device import (
    DeviceSettings,
    ExchangeResult,
    Faults,
    Outcome,
    SimulatedUitd,
    UdpSimulatedUitd,
)
from firegate.sim.load import DEFAULT_MIX, Mix, parse_mix, run_load
from firegate.sim.payloads import Kind
from firegate.sim.report import LatencyRecorder, LoadReport, SimStats

__all__ = [
    "DEFAULT_MIX",
    "DeviceSettings",
    "ExchangeResult",
    "Faults",
    "Kind",
    "LatencyRecorder",
    "LoadReport",
    "Mix",
    "Outcome",
    "SimStats",
    "SimulatedUitd",
    "UdpSimulatedUitd",
    "one_alarm",
    "parse_mix",
    "raise_nofile_limit",
    "run_load",
    "sim_main",
]

"""UITD simulator and load generator for GB/T 26875.3 centers (`firegate sim`).

`SimulatedUitd` is one device (TCP; `UdpSimulatedUitd` over UDP), `run_load` drives many of them
and returns a `LoadReport`, `run_storm` runs the district-wide storm and returns a `StormReport`,
`sim_main` is the command line.
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
from firegate.sim.storm import FAULT_KINDS, FIRE_KINDS, FireRecord, StormReport, run_storm

__all__ = [
    "DEFAULT_MIX",
    "FAULT_KINDS",
    "FIRE_KINDS",
    "DeviceSettings",
    "ExchangeResult",
    "Faults",
    "FireRecord",
    "Kind",
    "LatencyRecorder",
    "LoadReport",
    "Mix",
    "Outcome",
    "SimStats",
    "SimulatedUitd",
    "StormReport",
    "UdpSimulatedUitd",
    "one_alarm",
    "parse_mix",
    "raise_nofile_limit",
    "run_load",
    "run_storm",
    "sim_main",
]

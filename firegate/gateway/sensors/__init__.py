"""IoT sensors over MQTT: one more transport onto the protocol-neutral ingest.

`source` subscribes (aiomqtt, QoS 1, persistent session, PUBACK only once stored), a payload
codec (`firegate.codecs`) turns each message into samples, `mapping` places them on the
standard's points (analog values, and component status from `thresholds` and the sensor's own
flags), and ingest stores them as for a UITD. `run_sources` is what `firegate run` starts."""

from firegate.gateway.sensors.source import SensorSource, run_sources

__all__ = ["SensorSource", "run_sources"]

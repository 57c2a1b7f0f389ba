"""Built-in MQTT payload codecs for IoT sensors: a JSON field mapping and the MEOKON hex frame.

Both are `MessageCodec`s registered in the ``firegate.codecs`` entry-point group like any
plugin; the sensor input (`firegate.gateway.sensors`) maps their samples onto the standard."""

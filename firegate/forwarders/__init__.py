"""Forwarders: the alarm lifecycle and the deliveries to outside systems (119, MQTT, webhooks).

They know events and the outside systems; never sockets of devices nor frames.
"""

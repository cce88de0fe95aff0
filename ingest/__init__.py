"""Ingest: MQTT client, topic routing, payload schemas, writers and the simulator."""

"""Probe agents: registration, keys, heartbeats, the checks they run and the results they send."""

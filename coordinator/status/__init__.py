"""Statuses of sources and checks (CONTRACT §4).

`rules` holds the rules themselves as pure functions over plain values: no database, no clock, no
I/O. The result ingest and the staleness sweep load a source's state, fold results into it, ask
for the statuses and store what changed; those wirings live next to this module, not inside it.
"""

"""Central execution: the checks nobody else runs are probed by the coordinator itself."""

from coordinator.central.runner import CentralRunner

__all__ = ["CentralRunner"]

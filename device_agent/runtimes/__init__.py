"""Runners: how a schedule of bursts is measured (in-process on the host, or by a binary on a device).

A runner is generic over "a model file + its input shape" (``Item``), so a whole network is
measured exactly like one operator.
"""

from device_agent.runtimes.base import Burst, BurstResult, Item, Runner, RUNTIMES

__all__ = ["Burst", "BurstResult", "Item", "Runner", "RUNTIMES"]

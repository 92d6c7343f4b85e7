"""hwnas core: the torch-free contracts shared by profiler_server, device_agent and search."""

from hwnas.opkey import OVERHEAD_KEY, OpKeyError, OpSpec, is_valid_key

__all__ = ["OVERHEAD_KEY", "OpKeyError", "OpSpec", "is_valid_key"]
__version__ = "0.1.0"

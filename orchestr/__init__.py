"""orchestr: Compose-format stacks on one machine or a cluster, on its own runtime."""

__version__ = "0.1.0"
__all__ = ["__version__"]

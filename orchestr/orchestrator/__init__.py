"""The orchestrator: services' desired tasks (reconciler.py, restart.py)."""

"""The updater: rolling updates and rollbacks of services' tasks (rolling.py)."""

"""The scheduler: which node runs each pending task (filters.py, scheduler.py)."""

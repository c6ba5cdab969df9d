"""The manager: the control plane's runtime — one round of decisions over the store
(decide.py), the loop that runs it (controller.py), and the Engine API's service, task and
node endpoints (api.py)."""

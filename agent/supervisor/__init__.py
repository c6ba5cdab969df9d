"""The node supervisor: one small process that parents every container of a node.

It is a child subreaper: containers it creates (through `agent.runtime`) are
re-parented to it, so it alone reaps them and records how they ended. It holds
their stdout/stderr pipes and writes them to Docker json-file logs, and serves
a line-based JSON protocol on a unix socket (see docs/design/supervisor.md).
The daemon may die and come back; the supervisor, and the containers, stay.

Modules: `logs` (json-file lines, 16 KiB splitting, rotation), `frames`
(Docker's multiplexed attach frames), `records` (the per-container state and
its transitions), `execs` (checks of exec and resize requests), `server` (the
event loop: containers, tty containers, exec processes), `client` (a blocking
client and `start_supervisor`). Nothing is imported here, so that `python -m
agent.supervisor` stays small.

Errors: `client.SupervisorError` (a RuntimeError) carries the supervisor's
one-line message for a refused request, or says that it cannot be reached.
"""

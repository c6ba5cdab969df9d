"""The node agent's executor: the tasks assigned to this node, run as containers."""

"""Dependency graphs of a stack's services: order, waves, cycles, drawings."""

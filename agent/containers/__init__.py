"""Containers: create bodies checked into specs, records on disk, and the service that runs
them through the node supervisor."""

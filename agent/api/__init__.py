"""The node's Engine API endpoints (images, system; containers and volumes next)."""

"""The Compose stage: loading stack files (loader pieces land here one by one)."""

"""The `orchestr` command line (click); talks to the daemon only through the client."""

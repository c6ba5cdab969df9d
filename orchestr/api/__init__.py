"""The Engine API: its HTTP server (http.py), shared by the daemon's parts."""

"""Running a Compose project on one node through the Docker Engine API."""

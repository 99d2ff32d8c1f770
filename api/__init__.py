"""The REST service over the orchestrator, its sweep registry, and the `shiftsweep` command-line client."""

API_PREFIX = "/api/v1"  # every endpoint lives under this path; shared by the app and its client

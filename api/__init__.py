"""The REST service (`api.server`), its command-line client (`api.client`) and the embedded demo (`api.demo`).

What server and client both rely on is defined here, once: where the endpoints live, the states of a sweep, and
what counts as this machine.
"""

import ipaddress

API_PREFIX = "/api/v1"  # every endpoint lives under this path

# The lifecycle of a sweep as the service reports it. `submitted`: the job was handed to Ray; `cancelling`:
# a stop was requested and the job has not ended yet.
ACTIVE_STATES = ("submitted", "pending", "running", "cancelling")
TERMINAL_STATES = ("finished", "cancelled", "failed")
SWEEP_STATES = ACTIVE_STATES + TERMINAL_STATES


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP, IPv6 with or without brackets) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

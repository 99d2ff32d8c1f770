"""Port choice for local Ray nodes: Ray refuses a node whose components were given the same port."""

from __future__ import annotations

import socket

from orchestrator.local_cluster import free_ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    with socket.socket() as s:  # released when chosen: the caller can take one
        s.bind(("127.0.0.1", ports[0]))

"""The local-cluster launcher itself: what tests and `taskctl dev up` stand on."""

from __future__ import annotations

import socket

from ringpool.testing.local import LocalCluster


def test_a_node_whose_port_was_taken_meanwhile_is_started_again_elsewhere(
    zk_hosts: str, redis_url: str, cluster_name: str,
) -> None:
    # free_port() only finds a port free at that moment: another process may bind it
    # before the node does. The launcher then starts the node again on fresh ports.
    with socket.socket() as squatter, LocalCluster(
        nodes=0, coordinators=0, zk=zk_hosts, redis=redis_url, cluster=cluster_name,
    ) as local:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        local.node_ports["n1"] = taken
        local.start_node("n1", timeout=60)
        assert local.members() == {"n1"}
        assert local.node_ports["n1"] != taken

"""Optional ZooKeeper digest ACLs: only members write the ring, only operators the config.

Off by default. Two digest identities, each given as ``USER:PASSWORD``:

- the **member** identity (``--zk-auth`` / ``RINGPOOL_ZK_AUTH`` on nodes and
  coordinators, ``zk_auth=`` in ``ClientSettings``): znodes its processes create
  get ``world:anyone`` READ plus ``digest:member`` ALL, and at start-up a node or
  coordinator tightens the cluster's paths to that (``secure_cluster``);
- the **operator** identity (``taskctl --zk-operator-auth``): the config znode is
  written with ``world:anyone`` READ plus ``digest:operator`` ALL.

Everyone can still read the ring (clients route with it) and the config.

    /ringpool                       world READ|CREATE   (shared by clusters)
    /ringpool/<cluster>             world READ|CREATE, member ALL but DELETE
    .../members, draining, restarting, cut-off, coordinator
                                    world READ, member ALL (children too)
    .../config                      world READ, operator ALL
"""

from __future__ import annotations

import logging
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import ACL, make_acl, make_digest_acl

from ringpool.core.naming import Names
from ringpool.errors import ConfigError

log = logging.getLogger(__name__)

ROOT = "/ringpool"


def parse_credential(text: str, what: str = "ZooKeeper credential") -> tuple[str, str]:
    """(user, password) from ``USER:PASSWORD``; ConfigError for anything else."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{what} must be USER:PASSWORD")
    return user, password


def owner_acl(credential: str) -> list[ACL]:
    """Everyone reads; only ``credential``'s identity writes, creates, deletes, administers."""
    user, password = parse_credential(credential)
    return [make_acl("world", "anyone", read=True), make_digest_acl(user, password, all=True)]


def client_options(auth: str = "", operator_auth: str = "") -> dict[str, Any]:
    """KazooClient keyword arguments: digest auth data and the ACL new znodes get.

    With an operator identity the default ACL is the operator's (taskctl writes only
    the config); otherwise the member's. Empty credentials: no auth, open ACLs.
    """
    credentials = [c for c in (auth, operator_auth) if c]
    for credential in credentials:
        parse_credential(credential)
    if not credentials:
        return {}
    return {
        "auth_data": [("digest", c) for c in credentials],
        "default_acl": owner_acl(operator_auth or auth),
    }


def _ensure_acl(client: KazooClient, path: str, acl: list[ACL]) -> None:
    client.ensure_path(path, acl=acl)
    current, _ = client.get_acls(path)
    if sorted(map(repr, current)) == sorted(map(repr, acl)):
        return
    try:
        client.set_acls(path, acl)
    except NoAuthError:
        raise ConfigError(
            f"ZooKeeper znode {path} is owned by another identity; "
            "fix its ACL or use that identity's --zk-auth"
        ) from None
    log.info("tightened the ACL of %s", path)


def secure_cluster(client: KazooClient, cluster: str, auth: str) -> None:
    """Give the cluster's znodes the member ACL (creating them when missing)."""
    names = Names(cluster)
    user, password = parse_credential(auth)
    member = make_digest_acl(user, password, all=True)
    # On the cluster root members may not delete: that would let them replace the config.
    member_root = make_digest_acl(user, password, read=True, write=True, create=True, admin=True)
    world_read = make_acl("world", "anyone", read=True)
    world_read_create = make_acl("world", "anyone", read=True, create=True)
    client.ensure_path(ROOT, acl=[world_read_create])  # never tightened: clusters share it
    _ensure_acl(client, names.zk_root, [world_read_create, member_root])
    for path in (names.members, names.draining, names.restarting, names.cut_off,
                 names.election):
        _ensure_acl(client, path, [world_read, member])

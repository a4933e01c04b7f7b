"""``status``, ``ring`` and ``route``: who is in the cluster and who owns what.

Nodes started with ``--group NAME`` form one ring per task group: shares are within
the group, ``route --group NAME`` routes on its ring, and ``status`` sums each group.
Without groups, every node is in the default group and nothing names it.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import click
import grpc
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from rich.console import Console

from ringpool.cli.taskctl.app import EXIT_USAGE, Session, fail, options_of, run
from ringpool.cli.taskctl.output import bar, emit, group_name, table
from ringpool.client.links import call_metadata, open_channel
from ringpool.client.settings import ClientSettings
from ringpool.core.envelope import check_key
from ringpool.core.naming import Names
from ringpool.core.ring import Member, Ring
from ringpool.errors import NoNodesAvailable
from ringpool.ops.members import member_state
from ringpool.ops.units import ago, when
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc


def leader_and_contenders(zk: KazooClient, names: Names) -> list[str]:
    """Coordinator identifiers in election order: the first one leads."""
    if not zk.exists(names.election):
        return []
    return [str(c) for c in zk.Election(names.election).contenders()]


def draining_nodes(zk: KazooClient, names: Names) -> list[str]:
    try:
        return sorted(zk.get_children(names.draining))
    except NoNodeError:
        return []


async def node_status(member: Member, settings: ClientSettings, timeout_s: float) -> dict[str, Any]:
    """The node's own view via its Status RPC; ``error`` set when it cannot be asked."""
    channel = open_channel(member.addr, settings)
    try:
        reply: pb.StatusResponse = await pb_grpc.NodeStub(channel).Status(
            pb.StatusRequest(), metadata=call_metadata(settings), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return {"error": f"{exc.code().name}: {exc.details()}"}
    finally:
        await channel.close(grace=None)
    return {
        "in_flight": reply.in_flight, "queued": reply.queued, "running": reply.running,
        "draining": reply.draining, "node_ring_version": reply.ring_version,
        "zookeeper": reply.zookeeper_state, "ring_stale_s": round(reply.ring_stale_s, 1),
        "counters": dict(reply.counters), "error": None,
    }


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Members, ring version, coordinator leader, retry-set and DLQ sizes."""
    options = options_of(ctx)

    async def body(session: Session) -> dict[str, Any]:
        zk = await session.zk()
        ring = await session.ring()
        store = await session.store()
        names = session.names
        contenders, draining = await asyncio.gather(
            asyncio.to_thread(leader_and_contenders, zk, names),
            asyncio.to_thread(draining_nodes, zk, names),
        )
        settings = options.settings()
        shares = group_shares(ring)
        ordered = sorted(ring.members.values(), key=lambda m: m.node_id)
        replies, recorded, sizes = await asyncio.gather(
            asyncio.gather(*(node_status(m, settings, options.timeout_s) for m in ordered)),
            store.inflight_counts(),
            store.queue_sizes(),
        )
        members = []
        for member, reply in zip(ordered, replies, strict=True):
            members.append({
                "node_id": member.node_id, "address": member.addr, "group": member.group,
                "share": round(shares.get(member.node_id, 0.0), 6), "weight": member.weight,
                "state": member_state(reply["error"], bool(reply.get("draining")),
                                      reply.get("zookeeper") or ""), "in_flight": reply.get("in_flight"),
                "queued": reply.get("queued"), "running": reply.get("running"),
                "in_flight_recorded": recorded.get(member.node_id, 0),
                "started_at": member.started_at or None,
                "zookeeper": reply.get("zookeeper"), "ring_stale_s": reply.get("ring_stale_s"),
                "node_ring_version": reply.get("node_ring_version"),
                "counters": reply.get("counters", {}), "error": reply["error"],
            })
        return {
            "cluster": options.cluster, "ring_version": ring.version,
            "leader": contenders[0] if contenders else None, "coordinators": contenders,
            "members": members, "groups": group_totals(members), "draining": draining,
            "retry_set": sizes.retries, "dlq": sizes.dlq,
        }

    data = run(options, body)

    def human(out: Console) -> None:
        leader = data["leader"] or "[red]none[/red]"
        out.print(f"[bold]cluster[/bold] {data['cluster']}  ring v{data['ring_version']}  "
                  f"{len(data['members'])} members  leader {leader}  "
                  f"retry set {data['retry_set']}  DLQ {data['dlq']}")
        grouped = set(data["groups"]) != {""} and bool(data["groups"])
        if grouped:
            out.print("groups  " + "  ".join(
                f"{group_label(name)}: {g['serving']}/{g['members']} serving, "
                f"{g['in_flight']} in flight" for name, g in data["groups"].items()))
        t = table("node", *(["group"] if grouped else []), "address", "share", "state",
                  "in-flight", "queued", "running", "started")
        for m in data["members"]:
            state = {"serving": "[green]serving[/green]", "draining": "[yellow]draining[/yellow]",
                     "no-zookeeper": "[yellow]no-zookeeper[/yellow]",
                     "unreachable": "[red]unreachable[/red]"}[m["state"]]
            dash = "-"
            t.add_row(
                m["node_id"], *([group_label(m["group"])] if grouped else []), m["address"],
                f"{m['share'] * 100:.1f}%", state,
                str(m["in_flight"] if m["in_flight"] is not None else m["in_flight_recorded"]),
                str(m["queued"] if m["queued"] is not None else dash),
                str(m["running"] if m["running"] is not None else dash),
                f"{when(m['started_at'])} ({ago(m['started_at'])})" if m["started_at"] else dash,
            )
        out.print(t)
        if data["draining"]:
            out.print(f"draining: {', '.join(data['draining'])}")
        for m in data["members"]:
            if m["error"]:
                out.print(f"[red]{m['node_id']}: {m['error']}[/red]")
            elif m["state"] == "no-zookeeper":
                out.print(f"[yellow]{m['node_id']}: without ZooKeeper for {m['ring_stale_s']:.0f}s"
                          f", serving on its ring v{m['node_ring_version']}[/yellow]")

    emit(options, data, human)


SERVING = ("serving", "no-zookeeper")  # states of a member that serves (the latter on its last ring)


def group_label(group: str) -> str:
    return group or "default"


def group_shares(ring: Ring) -> dict[str, float]:
    """Each member's share of the key space of its own group's ring."""
    return {node: share for members in ring.groups.values()
            for node, share in members.shares().items()}


def group_totals(members: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per task group: members, those serving, and tasks in flight (as the nodes say, or as
    Redis holds them for a node that does not answer)."""
    totals: dict[str, dict[str, int]] = {}
    for m in members:
        group = totals.setdefault(m["group"], {"members": 0, "serving": 0, "in_flight": 0})
        group["members"] += 1
        group["serving"] += m["state"] in SERVING
        group["in_flight"] += m["in_flight"] if m["in_flight"] is not None \
            else m["in_flight_recorded"]
    return dict(sorted(totals.items()))


@click.command()
@click.option("--keys", "sample", type=click.IntRange(min=1, max=10_000_000), default=None,
              metavar="N", help="also measure each member's share over N sample keys")
@click.pass_context
def ring(ctx: click.Context, sample: int | None) -> None:
    """Each member's share of the key space (and, with --keys, the measured share)."""
    options = options_of(ctx)

    async def body(session: Session) -> Ring:
        return await session.ring()

    current = run(options, body)
    shares = group_shares(current)
    measured: dict[str, float] = {}
    if sample:
        for members in current.groups.values():
            counts = Counter(members.owner(f"key:{i}") for i in range(sample))
            measured.update({node: counts.get(node, 0) / sample for node in members.members})
    grouped = set(current.groups) - {""}
    rows: list[dict[str, Any]] = [
        {"node_id": node, "group": current.members[node].group,
         "address": current.members[node].addr,
         "weight": current.members[node].weight, "vnodes": max(1, round(
             current.vnodes * current.members[node].weight)),
         "share": round(shares[node], 6),
         **({"measured_share": round(measured[node], 6)} if sample else {})}
        for node in sorted(current.members, key=lambda n: (current.members[n].group, n))
    ]
    data: dict[str, Any] = {
            "cluster": options.cluster, "ring_version": current.version, "members": rows,
            **({"sample_keys": sample} if sample else {})}

    def human(out: Console) -> None:
        out.print(f"[bold]ring v{current.version}[/bold]  {len(rows)} members  "
                  f"{current.vnodes} virtual nodes per unit of weight")
        columns = ["node", *(["group"] if grouped else []), "address", "share", ""]
        if sample:
            columns.append("measured")
        t = table(*columns)
        for row in rows:
            cells = [row["node_id"], *([group_label(row["group"])] if grouped else []),
                     row["address"], f"{row['share'] * 100:.1f}%", bar(row["share"])]
            if sample:
                cells.append(f"{row['measured_share'] * 100:.1f}%")
            t.add_row(*cells)
        out.print(t)
        if grouped:
            out.print("shares are of each group's own ring")
        if sample:
            out.print(f"measured over {sample} sample keys")

    emit(options, data, human)


@click.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--group", default="", metavar="NAME", callback=group_name,
              help="route on the ring of this task group (default: the default group)")
@click.pass_context
def route(ctx: click.Context, keys: tuple[str, ...], group: str) -> None:
    """The owner of each KEY (use '-' to read keys from stdin, one a line)."""
    options = options_of(ctx)
    wanted: list[str] = []
    for key in keys:
        if key == "-":
            wanted += [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        else:
            wanted.append(key)
    if not wanted:
        fail("no keys given", EXIT_USAGE)
    for key in wanted:
        check_key(key)

    async def body(session: Session) -> Ring:
        return await session.ring()

    current = run(options, body).group(group)
    if not len(current):
        raise NoNodesAvailable(f"no nodes of group {group!r} in the ring" if group
                               else "no nodes in the ring")
    rows = [{"key": key, "owner": current.owner(key),
             "address": current.members[current.owner(key)].addr} for key in wanted]
    data = {"ring_version": current.version, "group": group, "routes": rows}

    def human(out: Console) -> None:
        t = table("key", "owner", "address")
        for row in rows:
            t.add_row(row["key"], row["owner"], row["address"])
        out.print(t)

    emit(options, data, human)

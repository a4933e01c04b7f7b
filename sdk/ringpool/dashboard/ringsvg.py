"""The ring as a picture: each member's virtual-node arcs as one SVG path, in its colour.

Angles run clockwise from twelve o'clock over the 64-bit key space; an arc ends at its
virtual node's position and starts after the previous one, so it covers exactly the
keys that member owns there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jinja2 import Template
from markupsafe import Markup

from ringpool.core.ring import Ring, key_position

RADIUS = 90.0
SPAN = float(1 << 64)


@dataclass(frozen=True)
class NodeArcs:
    node_id: str
    colour: str
    share: float
    path: str  # SVG path data: every arc of this member


def colour(index: int) -> str:
    """Distinct hues for neighbours in node-id order (golden-angle steps)."""
    return f"hsl({index * 137.508 % 360:.0f} 65% 48%)"


def angle(position: int) -> float:
    """A ring position as radians clockwise from twelve o'clock."""
    return position / SPAN * 2 * math.pi


def point(radians: float, radius: float = RADIUS) -> tuple[float, float]:
    return radius * math.sin(radians), -radius * math.cos(radians)


def _arc(start: float, end: float) -> str:
    """Path data of the clockwise arc from ``start`` to ``end`` (radians, end > start)."""
    parts = []
    while end - start > math.pi:  # one arc command draws at most half the circle here
        parts.append(_arc(start, start + math.pi))
        start += math.pi
    (x1, y1), (x2, y2) = point(start), point(end)
    parts.append(f"M{x1:.1f} {y1:.1f}A{RADIUS:g} {RADIUS:g} 0 0 1 {x2:.1f} {y2:.1f}")
    return "".join(parts)


def node_arcs(ring: Ring) -> list[NodeArcs]:
    """One entry per member, in node-id order."""
    points = ring.points()
    paths: dict[str, list[str]] = {node_id: [] for node_id in ring.members}
    for index, (position, owner) in enumerate(points):
        previous = points[index - 1][0] if index else points[-1][0] - (1 << 64)
        paths[owner].append(_arc(angle(previous), angle(position)))
    shares = ring.shares()
    return [NodeArcs(node_id, colour(i), shares[node_id], "".join(paths[node_id]))
            for i, node_id in enumerate(sorted(ring.members))]


def key_angle_deg(key: str) -> float:
    """Where a key sits on the picture, in degrees clockwise from twelve o'clock."""
    return math.degrees(angle(key_position(key)))


@dataclass(frozen=True)
class RingPicture:
    version: int
    colours: dict[str, str]  # node id -> its colour
    svg: Markup  # the picture and its legend, rendered


def picture(ring: Ring, template: Template) -> RingPicture:
    arcs = node_arcs(ring)
    return RingPicture(ring.version, {a.node_id: a.colour for a in arcs},
                       Markup(template.render(ring=ring, arcs=arcs)))

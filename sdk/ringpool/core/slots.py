"""Task slots: the 16-bit hash every task id carries in its first four hex digits.

A task's slot is the hash of its routing key, or of its task name and idempotency
key when it has one (so that every submission of one idempotent task meets the
same fingerprint), or for a schedule's tick the schedule's name's (so that a tick is
made in the schedule's partition). The state store keeps a task in partition ``slot % partitions``,
and reads the slot back from the id alone: a lookup by id needs no key, and the
partition count can be chosen per cluster without changing how ids are made.
"""

from __future__ import annotations

import os

import mmh3

SLOTS = 1 << 16
_HEX = frozenset("0123456789abcdef")


def key_slot(key: str) -> int:
    """The slot of a task without an idempotency key: its routing key's."""
    return mmh3.hash(key.encode(), signed=False) & (SLOTS - 1)


def idempotent_slot(name: str, idempotency_key: str) -> int:
    """The slot of a task with an idempotency key: its (task name, idempotency key)'s.

    The name's length goes first, so that no two pairs hash the same text.
    """
    return key_slot(f"{len(name)}:{name}:{idempotency_key}")


def schedule_slot(name: str) -> int:
    """The slot of a schedule and of its ticks' tasks: its name's."""
    return key_slot(f"schedule:{name}")


def task_slot(key: str, name: str, idempotency_key: str) -> int:
    """The slot a new task's id carries."""
    return idempotent_slot(name, idempotency_key) if idempotency_key else key_slot(key)


def new_task_id(slot: int | None = None) -> str:
    """32 hex digits: the slot (random when None), then 112 random bits."""
    if slot is None:
        return os.urandom(16).hex()
    return f"{slot:04x}{os.urandom(14).hex()}"


def slot_of(task_id: str) -> int:
    """The slot ``task_id`` carries; an id not made by ``new_task_id`` gets its own hash."""
    head = task_id[:4]
    if len(task_id) > 4 and _HEX.issuperset(head):
        return int(head, 16)
    return key_slot(task_id)

"""A task module that declares a schedule of a task nobody registers: a node refuses it."""

from __future__ import annotations

from ringpool import Task, periodic

periodic("conformance.orphan", "reports:1", Task("no.such.task"), every=60)

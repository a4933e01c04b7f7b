"""A task module that declares a schedule: nodes that load it publish the schedule."""

from __future__ import annotations

from ringpool import periodic
from tests.tasks_conformance import add

NIGHTLY = periodic("conformance.nightly", "reports:1", add.s(1, 2), cron="30 2 * * *",
                   tz="Europe/Berlin")

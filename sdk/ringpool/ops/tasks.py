"""Tasks by state, a page at a time: what ``taskctl tasks ls`` and the dashboard's task
pages list, from the state store's bounded listings.

Queued and running tasks are read from the nodes' in-flight hashes, node by node;
retrying ones from the retry set, and scheduled ones (delayed tasks, schedule ticks)
from the scheduled set, soonest due first. Each page is one listing call
that reads at most a budget of entries, so a filter that matches little may return a
short (even empty) page with a cursor to go on from.
"""

from __future__ import annotations

from ringpool.core.protocol import TaskState
from ringpool.store.listing import InvalidQuery, Page, TaskQuery
from ringpool.store.store import StateStore

IN_FLIGHT = "inflight"
#: Each listable state and the ``TaskState`` it lists (None: queued and running alike).
STATES: dict[str, TaskState | None] = {
    IN_FLIGHT: None,
    "queued": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "retrying": TaskState.RETRY_SCHEDULED,
    "scheduled": TaskState.SCHEDULED,
}
#: The states listed by due time (a time range filters them).
BY_DUE = ("retrying", "scheduled")


async def list_tasks(store: StateStore, state: str, query: TaskQuery, cursor: str | None,
                     limit: int) -> Page:
    """One page of the tasks in ``state`` that match ``query``; InvalidQuery for a state
    there is no listing of, or a time range where it has no meaning."""
    if state not in STATES:
        raise InvalidQuery(f"no task state {state!r}; choose one of {', '.join(STATES)}")
    wanted = STATES[state]
    if wanted is TaskState.RETRY_SCHEDULED:
        return await store.retries_list(query, cursor, limit)
    if wanted is TaskState.SCHEDULED:
        return await store.scheduled_list(query, cursor, limit)
    if query.timed:
        raise InvalidQuery("a time range filters retrying and scheduled tasks only (their due "
                           "times)")
    return await store.inflight_list(query, wanted, cursor, limit)


async def counts(store: StateStore) -> dict[str, int]:
    """How many tasks are in flight, wait for a retry, and wait for their time."""
    sizes = await store.queue_sizes()
    return {IN_FLIGHT: await store.inflight_count(), "retrying": sizes.retries,
            "scheduled": sizes.scheduled}

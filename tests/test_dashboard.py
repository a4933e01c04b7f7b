"""The dashboard in headless Chromium against a real local cluster (2 nodes, 1 coordinator):
live pages, replay and purge from the UI, sign-in, the viewer's limits, CSRF, bad input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from ringpool import Cluster, Task
from ringpool.core.config import read_config
from ringpool.core.membership import connect_zookeeper
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests.dashboard_harness import (
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    chromium,
    running_dashboard,
    signed_in,
)
from tests.helpers import dlq_key, eventually
from tests.tasks_flaky import gate_key


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    cluster = LocalCluster(nodes=2, coordinators=1, tasks=["ringpool.demo", "tests.tasks_flaky"],
                           zk=zookeeper.address, redis=redis_server.url,
                           cluster=f"dash{uuid.uuid4().hex[:10]}")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def url(local: LocalCluster, workdir: Path) -> Iterator[str]:
    with running_dashboard(local, workdir) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def client(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def rds(local: LocalCluster) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(local.redis)
    yield r
    r.close()


@pytest.fixture
def operator(browser: Browser, url: str) -> Iterator[Page]:
    context, page = signed_in(browser, url)
    yield page
    context.close()


@pytest.fixture
def viewer(browser: Browser, url: str) -> Iterator[Page]:
    context, page = signed_in(browser, url, VIEWER_TOKEN)
    yield page
    context.close()


def state(rds: redis.Redis, local: LocalCluster, task_id: str) -> str | None:
    value = rds.hget(Keys(local.cluster).task(task_id), "state")
    return value.decode() if value is not None else None


def in_dlq(rds: redis.Redis, local: LocalCluster, task_id: str) -> bool:
    return rds.zscore(dlq_key(local.cluster, task_id), task_id) is not None


def dead_letter(client: Cluster, rds: redis.Redis, local: LocalCluster, count: int) -> tuple[str, list[str]]:
    """``count`` flaky.gate tasks of a new gate, failed into the DLQ; the gate stays closed."""
    gate = f"g{uuid.uuid4().hex[:8]}"
    rds.set(gate_key(gate), 1)
    handles = client.dispatch_many([(f"{gate}:{i}", Task("flaky.gate", args=(gate,)))
                                    for i in range(count)])
    ids = [h.task_id for h in handles]
    eventually(lambda: all(in_dlq(rds, local, i) for i in ids), 60, "tasks in the DLQ")
    return gate, ids


def csrf_of(page: Page) -> str:
    return page.locator("input[name=csrf]").first.input_value()


# -- signing in ---------------------------------------------------------------------------------


def test_pages_need_a_sign_in_and_a_wrong_token_signs_in_to_nothing(
    browser: Browser, url: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/dlq?name=x")
    expect(page).to_have_url(re.compile(r"/login\?next=/dlq%3Fname%3Dx"))
    page.fill("input[name=token]", "not-a-token-at-all")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("signs in to nothing")
    assert page.request.get(f"{url}/api/snapshot").status == 401
    page.fill("input[name=token]", OPERATOR_TOKEN)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(f"{url}/dlq?name=x")  # back where it was going
    cookie = next(c for c in context.cookies() if c["name"] == "ringpool_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    page.click("text=Sign out")
    expect(page).to_have_url(f"{url}/login")
    context.close()


# -- overview -----------------------------------------------------------------------------------


def test_overview_shows_the_nodes_and_the_ring_live_and_finds_a_key_owner(
    operator: Page, url: str, local: LocalCluster, client: Cluster
) -> None:
    page = operator
    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(2)
    for node_id in ("node-0", "node-1"):
        row = page.locator(f"#nodes tr[data-node='{node_id}']")
        expect(row).to_contain_text("serving")
        expect(row).to_contain_text("127.0.0.1:")
        expect(row).to_contain_text("io 0/")
    expect(page.locator("svg.ring path.arc")).to_have_count(2)
    version = int(page.locator("[data-live=ring_version]").inner_text())

    page.fill("#route input[name=key]", "user:42")
    page.click("#route button")
    owner = client.owner("user:42")
    expect(page.locator("#route-result")).to_contain_text(f"user:42 → {owner}")
    expect(page.locator("svg.ring path.arc.owner")).to_have_attribute("data-node", owner)
    expect(page.locator("#key-marker")).to_be_visible()

    # A node joins: the page shows it without a reload (server-sent events).
    local.start_node("node-2")
    try:
        expect(rows).to_have_count(3, timeout=30_000)
        expect(page.locator("#nodes tr[data-node='node-2']")).to_contain_text("serving")
        expect(page.locator("[data-live=ring_version]")).not_to_have_text(str(version))
        expect(page.locator("svg.ring path.arc")).to_have_count(3)
        # The key lookup follows the new ring.
        expect(page.locator("svg.ring path.arc.owner")).to_have_attribute(
            "data-node", client.owner("user:42"), timeout=30_000)
    finally:
        local.stop_node("node-2")
    expect(rows).to_have_count(2, timeout=30_000)


def test_throughput_and_latency_sparklines_follow_the_traffic(
    operator: Page, client: Cluster
) -> None:
    handles = client.dispatch_many([(f"spark:{i}", Task("demo.sleep", args=(0.01,)))
                                    for i in range(300)])
    nonzero = re.compile(r"[1-9]")
    expect(operator.locator("[data-live=throughput_now]")).to_have_text(nonzero, timeout=30_000)
    expect(operator.locator("[data-live=latency_now]")).to_have_text(
        re.compile(r"^\d+\.\d ms$"), timeout=30_000)
    for handle in handles:
        handle.result(timeout=60)
    expect(operator.locator("#spark-throughput polyline")).to_have_count(1)
    assert len(operator.locator("#spark-latency polyline").get_attribute("points").split()) > 1


# -- tasks --------------------------------------------------------------------------------------


def test_tasks_by_state_and_lookup_by_id_and_by_key(
    operator: Page, url: str, client: Cluster
) -> None:
    page = operator
    sleeper = client.dispatch("lookup:slow", Task("demo.sleep", args=(20,)))
    page.goto(f"{url}/tasks?state=running")
    eventually(lambda: page.reload() and sleeper.task_id in page.content(), 30,
               "the sleeping task in the running list")
    page.goto(f"{url}/tasks?state=inflight&name=demo.sleep")
    expect(page.locator(f"a[href='/tasks/{sleeper.task_id}']")).to_be_visible()

    done = client.dispatch("lookup:done", Task("demo.add", args=(40, 2)))
    assert done.result(timeout=10) == 42
    page.goto(f"{url}/tasks")
    page.fill("form.lookup input[name=q]", done.task_id)
    page.click("form.lookup button")
    expect(page).to_have_url(f"{url}/tasks/{done.task_id}")
    expect(page.locator("h1")).to_contain_text("SUCCEEDED")
    expect(page.locator("pre.result")).to_have_text("42")
    expect(page.locator("dl.facts")).to_contain_text(f"owned now by {client.owner('lookup:done')}")

    page.goto(f"{url}/tasks")
    page.fill("form.lookup input[name=q]", "lookup:slow")
    page.click("form.lookup button")
    expect(page.locator(".owner-banner")).to_contain_text(
        f"lookup:slow belongs to {client.owner('lookup:slow')}")
    expect(page.locator(f"a[href='/tasks/{sleeper.task_id}']")).to_be_visible()


# -- the dead-letter queue ----------------------------------------------------------------------


def test_replay_from_the_ui_makes_dead_letters_succeed(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = operator
    gate, ids = dead_letter(client, rds, local, 3)
    page.goto(f"{url}/dlq?key={gate}:*")
    rows = page.locator("table.grid tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("GateClosed")
    rds.delete(gate_key(gate))  # the cause is fixed: replays now succeed
    page.check("[data-select-all]")
    page.click("button:has-text('Replay selected')")
    expect(page.locator("#job-summary")).to_contain_text("replayed 3, skipped 0, failed 0 of 3",
                                                         timeout=30_000)
    eventually(lambda: all(state(rds, local, i) == "SUCCEEDED" for i in ids), 60,
               "the replayed tasks to succeed")
    assert not any(in_dlq(rds, local, i) for i in ids)


def test_replay_every_match_of_a_filter_after_a_dry_run_at_a_rate(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = operator
    gate, ids = dead_letter(client, rds, local, 20)
    page.goto(f"{url}/dlq?key={gate}:*&limit=25")
    page.fill("form.actions:has(#replay-matching) input[name=rate]", "50/s")
    page.click("#replay-matching")  # dry run is ticked by default
    expect(page.locator("#job-summary")).to_contain_text("dry run: would replay 20")
    assert all(in_dlq(rds, local, i) for i in ids)

    rds.delete(gate_key(gate))
    page.goto(f"{url}/dlq?key={gate}:*&limit=25")
    page.uncheck("form.actions:has(#replay-matching) input[name=dry_run]")
    page.fill("form.actions:has(#replay-matching) input[name=rate]", "50/s")
    page.click("#replay-matching")
    expect(page.locator("#job-summary")).to_contain_text("replayed 20, skipped 0, failed 0 of 20",
                                                         timeout=30_000)
    eventually(lambda: all(state(rds, local, i) == "SUCCEEDED" for i in ids), 60,
               "the replayed tasks to succeed")


def test_purge_asks_first_and_cancel_keeps_everything(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = operator
    gate, ids = dead_letter(client, rds, local, 2)
    page.goto(f"{url}/dlq?key={gate}:*")
    page.check(f"input[name=ids][value='{ids[0]}']")
    page.click("button:has-text('Purge selected')")
    expect(page.locator("h1")).to_have_text("Purge 1 entry?")
    assert in_dlq(rds, local, ids[0])  # asking changed nothing
    page.click("text=Cancel")
    expect(page).to_have_url(f"{url}/dlq")
    assert in_dlq(rds, local, ids[0]) and state(rds, local, ids[0]) == "FAILED"

    page.goto(f"{url}/dlq?key={gate}:*")
    page.check(f"input[name=ids][value='{ids[0]}']")
    page.click("button:has-text('Purge selected')")
    page.click("button:has-text('Purge 1')")
    expect(page.locator("#job-summary")).to_contain_text("purged 1 of 1")
    assert not in_dlq(rds, local, ids[0]) and state(rds, local, ids[0]) is None
    assert in_dlq(rds, local, ids[1])

    page.goto(f"{url}/dlq?key={gate}:*")
    page.click("#purge-matching")
    expect(page.locator("h1")).to_have_text("Purge 1 entry?")
    page.click("button:has-text('Purge 1')")
    expect(page.locator("#job-summary")).to_contain_text("purged 1 of 1")
    assert not in_dlq(rds, local, ids[1])


# -- who may change what ------------------------------------------------------------------------


def test_a_viewer_sees_everything_and_changes_nothing(
    viewer: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = viewer
    _, ids = dead_letter(client, rds, local, 1)
    page.goto(f"{url}/dlq")
    expect(page.locator("[data-role]")).to_have_text("viewer")
    expect(page.locator(f"a[href='/tasks/{ids[0]}']")).to_be_visible()
    expect(page.locator("button:has-text('Replay')")).to_have_count(0)
    expect(page.locator("input[name=ids]")).to_have_count(0)
    page.goto(f"{url}/config")
    expect(page.locator("input[name='pool.max_workers']")).to_have_count(0)

    csrf = csrf_of(page)  # a valid token of the viewer's own session
    for path, form in (("/dlq/replay", {"ids": ids[0]}),
                       ("/dlq/purge", {"ids": ids[0], "confirm": "yes"}),
                       ("/config", {"version": "-1", "pool.max_workers": "7"})):
        reply = page.request.post(f"{url}{path}", form={"csrf": csrf, **form})
        assert reply.status == 403, path
        assert "viewers cannot change anything" in reply.text()
    assert in_dlq(rds, local, ids[0]) and state(rds, local, ids[0]) == "FAILED"


def test_a_change_without_the_csrf_token_is_refused(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = operator
    _, ids = dead_letter(client, rds, local, 1)
    page.goto(f"{url}/dlq")
    for form in ({"ids": ids[0], "confirm": "yes"},
                 {"ids": ids[0], "confirm": "yes", "csrf": "forged"}):
        reply = page.request.post(f"{url}/dlq/purge", form=form)
        assert reply.status == 403
        assert "CSRF token" in reply.text() and "nothing was changed" in reply.text()
    assert page.request.post(f"{url}/dlq/replay", form={"ids": ids[0]}).status == 403
    assert page.request.post(f"{url}/logout", form={}).status == 403
    # Nothing changes over GET.
    assert page.request.get(f"{url}/dlq/replay?ids={ids[0]}").status == 405
    assert page.request.get(f"{url}/logout").status == 405
    assert in_dlq(rds, local, ids[0]) and state(rds, local, ids[0]) == "FAILED"


# -- config -------------------------------------------------------------------------------------


def config_version(local: LocalCluster) -> tuple[int, dict[str, object]]:
    zk = connect_zookeeper(local.zk)
    try:
        stored = read_config(zk, local.cluster)
        return stored.version, stored.config.flat()
    finally:
        zk.stop()
        zk.close()


def test_config_changes_are_validated_together_before_anything_is_written(
    operator: Page, url: str, local: LocalCluster
) -> None:
    page = operator
    page.goto(f"{url}/config")
    page.fill("input[name='retry.max_retries']", "5")
    page.click("button:has-text('Save changes')")
    expect(page.get_by_role("status")).to_contain_text("Saved: retry.max_retries")
    version, values = config_version(local)
    assert values["retry.max_retries"] == 5

    for key, value, message in (
        ("pool.max_workers", "0", "pool.max_workers must be in [1, 10000]"),
        ("pool.min_workers", "500", "pool.min_workers (500) must be <= pool.max_workers"),
        ("retry.factor", "fast", "'fast' is not a number"),
    ):
        page.goto(f"{url}/config")
        page.fill(f"input[name='{key}']", value)
        page.click("button:has-text('Save changes')")
        expect(page.get_by_role("alert")).to_contain_text(message)
        expect(page.get_by_role("alert")).to_contain_text("nothing was written")
        expect(page.locator(f"input[name='{key}']")).to_have_value(value)  # kept to fix
        assert config_version(local) == (version, values)

    # Somebody else wrote since the page was shown: refused, nothing overwritten.
    page.goto(f"{url}/config")
    page.request.post(f"{url}/config", form={"csrf": csrf_of(page), "version": str(version),
                                             "retry.max_retries": "4"})
    page.fill("input[name='retry.max_retries']", "6")
    page.click("button:has-text('Save changes')")
    expect(page.get_by_role("alert")).to_contain_text("the config changed since this page")
    assert config_version(local)[1]["retry.max_retries"] == 4


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/dlq?since=3+fortnights", 400, "is neither a duration"),
    ("/dlq?since=1h&until=2h", 400, "the time range ends before it starts"),
    ("/dlq?limit=7", 400, "page size must be one of"),
    ("/dlq?cursor=nonsense", 400, "not a listing cursor"),
    ("/tasks?state=sleeping", 400, "no task state 'sleeping'"),
    ("/tasks?state=queued&since=1h", 400, "a time range filters retrying and scheduled tasks only"),
    ("/tasks/no-such-task", 404, "no task no-such-task"),
    ("/dlq/jobs/99999", 404, "no job 99999"),
    ("/tasks/find?q=", 400, "type a task id or a key"),
    ("/api/route?key=", 400, "key:"),
])
def test_bad_input_gets_a_clear_error_page(
    operator: Page, url: str, path: str, status: int, message: str
) -> None:
    reply = operator.goto(f"{url}{path}")
    assert reply is not None and reply.status == status
    assert message in operator.content()


def test_bad_replay_and_purge_forms_change_nothing(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    page = operator
    _, ids = dead_letter(client, rds, local, 1)
    page.goto(f"{url}/dlq")
    csrf = csrf_of(page)
    for path, form, status, message in (
        ("/dlq/replay", {"ids": "no-such-task"}, 404, "no such task: no-such-task"),
        ("/dlq/replay", {"ids": ids[0], "rate": "fast"}, 400, "is not a rate"),
        ("/dlq/replay", {}, 400, "nothing selected"),
        ("/dlq/purge", {"scope": "filter", "since": "soon", "confirm": "yes"}, 400,
         "is neither a duration"),
        ("/dlq/purge", {"ids": "no-such-task", "confirm": "yes"}, 404, "no such task"),
    ):
        reply = page.request.post(f"{url}{path}", form={"csrf": csrf, **form})
        assert reply.status == status, (path, form, reply.text()[:300])
        assert message in reply.text(), (path, form)
    assert in_dlq(rds, local, ids[0]) and state(rds, local, ids[0]) == "FAILED"


def test_snapshot_api_says_what_the_overview_shows(operator: Page, url: str) -> None:
    data = operator.request.get(f"{url}/api/snapshot").json()
    assert {n["node_id"] for n in data["nodes"]} >= {"node-0", "node-1"}
    node = data["nodes"][0]
    assert node["state"] == "serving" and node["version"] and node["pools"]
    assert {p["kind"] for p in node["pools"]} == {"io", "cpu", "async"}
    assert 0 <= node["load"] <= 1



# -- schedules and delayed tasks ----------------------------------------------------------------


def schedule_names(rds: redis.Redis, local: LocalCluster) -> list[str]:
    keys = Keys(local.cluster)
    return sorted(name.decode() for p in keys.all_partitions
                  for name in rds.zrange(keys.schedules(p), 0, -1))


def test_an_operator_adds_pauses_resumes_and_removes_a_schedule(
    operator: Page, url: str, local: LocalCluster, rds: redis.Redis
) -> None:
    page = operator
    page.goto(url)
    page.click("header nav a:has-text('Schedules')")
    expect(page).to_have_url(re.compile(r"/schedules$"))
    form = page.locator("form.schedule-form")
    form.locator("input[name=name]").fill("ui-report")
    form.locator("input[name=task]").fill("demo.add")
    form.locator("input[name=key]").fill("report:1")
    form.locator("input[name=args]").fill("[1, 2]")
    form.locator("input[name=cron]").fill("30 2 * * *")
    form.locator("input[name=tz]").fill("Europe/Berlin")
    form.locator("button[type=submit]").click()
    expect(page.get_by_role("status")).to_contain_text("schedule ui-report created")
    row = page.locator("tr[data-schedule='ui-report']")
    expect(row).to_contain_text("cron 30 2 * * * (Europe/Berlin)")
    expect(row).to_contain_text("demo.add")
    row.locator("button:has-text('Pause')").click()
    expect(row).to_contain_text("PAUSED")
    assert rds.hget(Keys(local.cluster).schedule("ui-report"), "paused") == b"1"
    row.locator("button:has-text('Resume')").click()
    expect(row.locator("button:has-text('Pause')")).to_be_visible()
    row.locator("button:has-text('Remove')").click()
    expect(page.get_by_role("status")).to_contain_text("schedule ui-report removed")
    expect(row).to_have_count(0)
    assert "ui-report" not in schedule_names(rds, local)


@pytest.mark.parametrize(("fields", "message"), [
    ({"cron": "61 * * * *"}, "bad cron expression"),
    ({}, "give a schedule cron=EXPR or every=SECONDS"),
    ({"cron": "0 3 * * *", "every": "1h"}, "one of them"),
    ({"every": "soon"}, "is not a duration"),
    ({"every": "1h", "args": "[1,"}, "arguments must be JSON"),
    ({"every": "1h", "task": "no.such.task"}, "no node serves a task named &#39;no.such.task"),
    ({"cron": "0 3 * * *", "tz": "Nowhere/Town"}, "unknown time zone"),
    ({"every": "1h", "name": "has space"}, "a schedule name is"),
    ({"every": "1h", "key": ""}, "routing key"),
], ids=["bad-cron", "neither", "both", "bad-every", "bad-json", "unknown-task", "bad-tz",
        "bad-name", "empty-key"])
def test_a_bad_schedule_form_says_why_and_writes_nothing(
    operator: Page, url: str, local: LocalCluster, rds: redis.Redis, fields: dict[str, str],
    message: str,
) -> None:
    page = operator
    page.goto(f"{url}/schedules")
    form = {"name": "bad-form", "task": "demo.add", "key": "k", **fields}
    reply = page.request.post(f"{url}/schedules", form={"csrf": csrf_of(page), **form})
    assert reply.status == 400, reply.text()[:300]
    assert message in reply.text()
    assert "nothing was written" in reply.text()
    assert "bad-form" not in schedule_names(rds, local)


def test_a_viewer_sees_schedules_and_changes_none(
    viewer: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    client.schedule("viewed", "k", Task("demo.add", args=(1, 1)), every=3600)
    try:
        page = viewer
        page.goto(f"{url}/schedules")
        expect(page.locator("tr[data-schedule='viewed']")).to_contain_text("every 3600s")
        expect(page.locator("form.schedule-form")).to_have_count(0)
        expect(page.locator("button:has-text('Pause')")).to_have_count(0)
        csrf = csrf_of(page)
        for path, form in (("/schedules", {"name": "v2", "task": "demo.add", "key": "k",
                                           "every": "1h"}),
                           ("/schedules/viewed/pause", {}), ("/schedules/viewed/remove", {}),
                           ("/tasks/cancel", {"ids": "x"})):
            reply = page.request.post(f"{url}{path}", form={"csrf": csrf, **form})
            assert reply.status == 403, path
            assert "viewers cannot change anything" in reply.text()
        assert schedule_names(rds, local).count("viewed") == 1
        assert rds.hget(Keys(local.cluster).schedule("viewed"), "paused") is None
    finally:
        client.unschedule("viewed")


def test_schedule_changes_need_the_csrf_token_and_a_known_name(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    client.schedule("guarded", "k", Task("demo.add", args=(1, 1)), every=3600)
    try:
        page = operator
        page.goto(f"{url}/schedules")
        for path in ("/schedules/guarded/pause", "/schedules/guarded/remove"):
            assert page.request.post(f"{url}{path}", form={"csrf": "forged"}).status == 403
        assert page.request.post(f"{url}/schedules/nope/pause",
                                 form={"csrf": csrf_of(page)}).status == 404
        assert "guarded" in schedule_names(rds, local)
    finally:
        client.unschedule("guarded")


def test_a_delayed_task_is_listed_and_cancelled_from_its_page(
    operator: Page, url: str, local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    handle = client.dispatch("later:1", Task("demo.add", args=(2, 2)), countdown=3600)
    task_id = handle.accepted(timeout=30)
    page = operator
    page.goto(f"{url}/tasks?state=scheduled&key=later:1")
    expect(page.locator(f"a[href='/tasks/{task_id}']")).to_be_visible()
    page.click(f"a[href='/tasks/{task_id}']")
    expect(page.locator("h1")).to_contain_text("SCHEDULED")
    expect(page.locator("dl.facts")).to_contain_text("Due")
    page.click("#cancel-task")
    expect(page.locator("h1")).to_contain_text("CANCELLED")
    expect(page.locator("#cancel-task")).to_have_count(0)
    assert state(rds, local, task_id) == "CANCELLED"
    again = page.request.post(f"{url}/tasks/cancel", form={"csrf": csrf_of(page), "ids": task_id})
    assert again.status == 400 and "already finished (CANCELLED)" in again.text()
# -- progress and groups ------------------------------------------------------------------------


def test_a_tasks_progress_and_each_nodes_group_are_shown(
    operator: Page, url: str, local: LocalCluster, client: Cluster
) -> None:
    page = operator
    counting = client.dispatch("progress:dash", Task("demo.count", args=(300, 0.1)))
    report = eventually(counting.progress, 30, "the task's first progress report")
    page.goto(f"{url}/tasks/{counting.task_id}")
    expect(page.locator("dd.progress meter")).to_have_count(1)
    expect(page.locator("dd.progress")).to_contain_text('"of": 300')
    node = client.owner("progress:dash")
    page.goto(f"{url}/tasks?state=running&node={node}&name=demo.count")
    row = page.locator("table.grid tbody tr", has=page.locator(
        f"a[href='/tasks/{counting.task_id}']"))
    expect(row).to_contain_text(node)
    assert float(row.locator("td").last.inner_text()) >= report.value
    other = next(n for n in ("node-0", "node-1") if n != node)
    page.goto(f"{url}/tasks?state=running&node={other}&name=demo.count")
    expect(page.locator(f"a[href='/tasks/{counting.task_id}']")).to_have_count(0)

    page.goto(f"{url}/")
    local.start_node("gpu-0", extra=["--group", "gpu"])
    try:
        expect(page.locator("#nodes tr[data-node='gpu-0']")).to_contain_text("gpu", timeout=30_000)
        expect(page.locator("#nodes tr[data-node='node-0']")).to_contain_text("default")
    finally:
        local.stop_node("gpu-0")


# -- ZooKeeper away -------------------------------------------------------------------------------


def test_a_node_without_zookeeper_is_shown_serving_on_its_last_ring(
    operator: Page, url: str, zookeeper: ZooKeeperServer
) -> None:
    def states() -> dict[str, str]:
        data = operator.request.get(f"{url}/api/snapshot").json()
        return {n["node_id"]: n["state"] for n in data["nodes"]}

    zookeeper.stop()
    try:
        eventually(lambda: set(states().values()) == {"no-zookeeper"}, 30,
                   "every node to be shown without ZooKeeper")
        operator.goto(url)
        badge = operator.locator("tr[data-node='node-0'] .state")
        assert badge.inner_text() == "no-zookeeper"
        assert "serving on its last ring" in (badge.get_attribute("title") or "")
    finally:
        zookeeper.start()
    eventually(lambda: set(states().values()) == {"serving"}, 60,
               "the nodes to be shown serving once ZooKeeper is back")

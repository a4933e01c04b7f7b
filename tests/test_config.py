"""The cluster config: schema checks, the znode's compare-and-set, and ``taskctl config``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from kazoo.client import KazooClient

from ringpool.cli.taskctl import cli
from ringpool.core import config
from ringpool.core.config import ClusterConfig, ConfigConflict, read_config, update_config, write_config
from ringpool.core.membership import connect_zookeeper
from ringpool.errors import ConfigError
from ringpool.testing.local import RedisServer, ZooKeeperServer


def test_defaults_match_the_documented_values() -> None:
    flat = ClusterConfig().flat()
    assert flat["autoscaler.arrival_weight"] == 0.40
    assert flat["autoscaler.queue_weight"] == 0.35
    assert flat["autoscaler.gc_weight"] == 0.25
    assert flat["retry.max_retries"] == 3
    assert flat["retry.cap_s"] == 300
    assert flat["limits.max_payload_bytes"] == 1024 * 1024
    assert flat["fingerprint_ttl_s"] == 86400
    assert (flat["result_ttl_s"], flat["accept_durability"]) == (0, "")  # each node's own
    assert list(flat) == list(config.KEYS)
    assert config.parse(b"") == ClusterConfig()
    assert config.parse(json.dumps(ClusterConfig().to_dict())) == ClusterConfig()


def test_partial_config_keeps_defaults_and_types() -> None:
    parsed = config.parse({"pool": {"max_workers": 64, "idle_timeout_s": 3},
                           "retry": {"max_retries": 5.0}})
    assert parsed.pool.max_workers == 64
    assert parsed.pool.min_workers == 4
    assert isinstance(parsed.pool.idle_timeout_s, float)
    assert parsed.retry.max_retries == 5 and isinstance(parsed.retry.max_retries, int)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"pool": {"min_workers": 40}}, "must be <= pool.max_workers"),
        ({"pool": {"max_workers": 0}}, "pool.max_workers must be in [1, 10000]"),
        ({"pool": {"max_workers": "8"}}, "pool.max_workers must be an integer"),
        ({"pool": {"max_workers": True}}, "must be an integer"),
        ({"pool": {"max_workers": 2.5}}, "must be an integer"),
        ({"pool": {"idle_timeout_s": float("nan")}}, "pool.idle_timeout_s must be in"),
        ({"autoscaler": {"arrival_weight": 0, "queue_weight": 0, "gc_weight": 0}},
         "weights must not all be zero"),
        ({"autoscaler": {"gc_weight": -1}}, "autoscaler.gc_weight must be in"),
        ({"retry": {"factor": 0.5}}, "retry.factor must be in [1, 100]"),
        ({"retry": {"max_retries": 101}}, "retry.max_retries must be in [0, 100]"),
        ({"retry": {"base_s": 10, "cap_s": 5}}, "retry.cap_s (5.0) must be >="),
        ({"limits": {"max_payload_bytes": 0}}, "limits.max_payload_bytes must be in"),
        ({"fingerprint_ttl_s": -1}, "fingerprint_ttl_s must be in"),
        ({"result_ttl_s": -1}, "result_ttl_s must be in [0, 31536000]"),
        ({"accept_durability": "disk"}, "accept_durability must be one of '', 'memory'"),
        ({"accept_durability": 1}, "accept_durability must be one of"),
        ({"pool": {"threads": 3}}, "unknown config key 'pool.threads'"),
        ({"colour": "blue"}, "unknown config key 'colour'"),
        ({"pool": 3}, "section 'pool' must be an object"),
        ([1, 2], "must be a JSON object"),
        ("{nope", "not valid JSON"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(data: object, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(data if isinstance(data, str | dict) else json.dumps(data))
    assert reason in str(caught.value)


def test_with_values_parses_text_and_validates_together() -> None:
    updated = ClusterConfig().with_values({"pool.max_workers": "64", "retry.base_s": "0.5"})
    assert updated.pool.max_workers == 64 and updated.retry.base_s == 0.5
    with pytest.raises(ConfigError, match="not a number"):
        ClusterConfig().with_values({"pool.max_workers": "lots"})
    with pytest.raises(ConfigError, match="unknown config key"):
        ClusterConfig().with_values({"nope": "1"})
    with pytest.raises(ConfigError, match="must be <="):
        ClusterConfig().with_values({"pool.min_workers": "64"})
    assert config.check_value("pool.min_workers", "64") == 64  # alone it is in range
    assert ClusterConfig().with_values({"accept_durability": "replica"}).accept_durability \
        == "replica"
    with pytest.raises(ConfigError, match="must be one of"):
        ClusterConfig().with_values({"accept_durability": "fsync"})


@pytest.fixture
def zk(zookeeper: ZooKeeperServer) -> Iterator[KazooClient]:
    client = connect_zookeeper(zookeeper.address)
    yield client
    client.stop()
    client.close()


def test_znode_roundtrip_and_compare_and_set(zk: KazooClient, cluster_name: str) -> None:
    missing = read_config(zk, cluster_name)
    assert not missing.exists and missing.config == ClusterConfig()
    first = ClusterConfig().with_values({"pool.max_workers": 48})
    version = write_config(zk, cluster_name, first, missing.version)
    stored = read_config(zk, cluster_name)
    assert stored.exists and stored.version == version and stored.config == first
    # A writer holding the old version loses, and nothing changes.
    with pytest.raises(ConfigConflict):
        write_config(zk, cluster_name, ClusterConfig(), missing.version)
    with pytest.raises(ConfigConflict):
        write_config(zk, cluster_name, ClusterConfig(), stored.version + 5)
    assert read_config(zk, cluster_name).config == first
    # An invalid config is refused before anything is written.
    with pytest.raises(ConfigError):
        write_config(zk, cluster_name,
                     ClusterConfig(pool=config.PoolConfig(min_workers=9, max_workers=2)),
                     stored.version)
    assert read_config(zk, cluster_name).version == stored.version
    updated = update_config(zk, cluster_name, lambda c: c.with_values({"retry.max_retries": 7}))
    assert updated.version == stored.version + 1
    assert read_config(zk, cluster_name).config.retry.max_retries == 7
    assert read_config(zk, cluster_name).config.pool.max_workers == 48


def _ctl(zookeeper: ZooKeeperServer, redis_server: RedisServer, cluster: str,
         *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--zk", zookeeper.address, "--redis", redis_server.url, "--cluster", cluster,
              *args])


def test_taskctl_config_get_and_set(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, cluster_name: str, zk: KazooClient
) -> None:
    def ctl(*args: str) -> Result:
        return _ctl(zookeeper, redis_server, cluster_name, *args)

    shown = ctl("config", "get")
    assert shown.exit_code == 0, shown.output
    assert "not stored yet: defaults" in shown.stdout
    assert "pool.max_workers" in shown.stdout and "autoscaler.gc_weight" in shown.stdout
    as_json = json.loads(ctl("--json", "config", "get").stdout)
    assert as_json["stored"] is False and as_json["values"] == ClusterConfig().flat()

    changed = ctl("config", "set", "pool.max_workers=64", "retry.base_s=0.5")
    assert changed.exit_code == 0, changed.output
    assert "pool.max_workers: 32 -> 64" in changed.stdout
    assert "retry.base_s: 1 -> 0.5" in changed.stdout
    again = json.loads(ctl("--json", "config", "set", "pool.min_workers=8").stdout)
    assert again["changed"] == {"pool.min_workers": {"old": 4, "new": 8}}
    assert again["config"]["pool"] == {"min_workers": 8, "max_workers": 64,
                                       "idle_timeout_s": 10.0}
    assert read_config(zk, cluster_name).config.pool.max_workers == 64

    one = ctl("config", "get", "pool.max_workers")
    assert one.exit_code == 0 and one.stdout.strip() == "64"
    assert json.loads(ctl("--json", "config", "get", "retry.base_s").stdout)["value"] == 0.5
    assert "8" in ctl("config", "get").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("config", "set", "pool.min_workers=100"), 5,
         "pool.min_workers (100) must be <= pool.max_workers (32)"),
        (("config", "set", "pool.max_workers=-1"), 5, "pool.max_workers must be in [1, 10000]"),
        (("config", "set", "pool.max_workers=many"), 5, "'many' is not a number"),
        (("config", "set", "pool.threads=4"), 5, "unknown config key 'pool.threads'"),
        (("config", "get", "pool.threads"), 5, "unknown config key 'pool.threads'"),
        (("config", "set", "pool.max_workers"), 2, "expected KEY=VALUE"),
        (("config", "set", "pool.max_workers="), 5, "'' is not a number"),
    ],
)
def test_taskctl_config_refuses_bad_values(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, cluster_name: str, zk: KazooClient,
    args: tuple[str, ...], code: int, message: str,
) -> None:
    result = _ctl(zookeeper, redis_server, cluster_name, *args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskctl: error: ")
    assert message in lines[0]
    assert not read_config(zk, cluster_name).exists  # nothing was written

"""One connection-settings model: the client, the node, the coordinator and taskctl read
flags (or arguments) first, then ``RINGPOOL_*``, then defaults, and validate alike; every
process flag names its variable in ``--help``; ``RINGPOOL_TLS_*`` is a client's
certificate everywhere (the node's own has ``--server-tls-*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ringpool.cli.taskctl import cli as taskctl_cli
from ringpool.cli.taskctl.app import options_of
from ringpool.client.settings import ClientSettings
from ringpool.core.settings import ConnectionSettings, env_name
from ringpool.dashboard.cli import main as dashboard_main
from ringpool.errors import ConfigError
from ringpool_coordinator.cli import main as coordinator_main
from ringpool_coordinator.settings import CoordinatorSettings
from ringpool_node.cli import check_server_certificate
from ringpool_node.cli import main as node_main
from ringpool_node.settings import NodeSettings

PROCESSES = [pytest.param(node_main, id="ringpool-node"),
             pytest.param(coordinator_main, id="ringpool-coordinator")]


def flags(command: click.Command, argv: list[str]) -> dict[str, Any]:
    """The values ``command`` would run with (flags, then environment, then defaults)."""
    with command.make_context(command.name or "", argv) as ctx:
        return dict(ctx.params)


def settings_of(command: click.Command, argv: list[str]) -> ConnectionSettings:
    values = flags(command, argv)
    values.pop("log_level")
    return (NodeSettings if command is node_main else CoordinatorSettings)(**values)


def test_arguments_beat_the_environment_which_beats_defaults(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGPOOL_ZK", "zk-env:2181")
    monkeypatch.setenv("RINGPOOL_REDIS", "redis://env/0")
    monkeypatch.setenv("RINGPOOL_TOKEN", "t-env")
    monkeypatch.setenv("RINGPOOL_OPERATOR_TOKEN", "o-env")
    monkeypatch.setenv("RINGPOOL_TLS_CA", "/env/ca.pem")
    monkeypatch.delenv("RINGPOOL_CLUSTER", raising=False)
    client = ClientSettings.resolve(zk="zk-arg:2181")
    assert (client.zk, client.redis, client.cluster, client.token, client.tls_ca) == (
        "zk-arg:2181", "redis://env/0", "default", "t-env", "/env/ca.pem")
    for command in (node_main, coordinator_main):
        process = settings_of(command, ["--zk", "zk-arg:2181"])
        assert (process.zk, process.redis, process.cluster, process.token,
                process.operator_token) == ("zk-arg:2181", "redis://env/0", "default", "t-env",
                                            "o-env")
    coordinator = settings_of(coordinator_main, [])
    assert isinstance(coordinator, CoordinatorSettings)
    assert coordinator.tls_ca == "/env/ca.pem"  # it dials nodes: a client's TLS settings
    with taskctl_cli.make_context("taskctl", ["--zk", "zk-arg:2181", "status"]) as ctx:
        assert taskctl_cli.callback is not None
        ctx.invoke(taskctl_cli.callback, **ctx.params)
        taskctl = options_of(ctx).settings()
    assert (taskctl.zk, taskctl.redis, taskctl.tls_ca) == ("zk-arg:2181", "redis://env/0",
                                                           "/env/ca.pem")


@pytest.mark.parametrize(("given", "reason"), [
    ({"redis": "redis://x/0"}, "no ZooKeeper address"),
    ({"zk": "z:1"}, "no Redis URL"),
    ({"zk": "z:1", "redis": "redis://x/0", "cluster": "a b"}, "invalid cluster name"),
    ({"zk": "z:1", "redis": "redis://x/0", "zk_auth": "nocolon"}, "USER:PASSWORD"),
])
def test_bad_connection_settings_are_refused_alike(
    given: dict[str, str], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RINGPOOL_ZK", "RINGPOOL_REDIS", "RINGPOOL_CLUSTER", "RINGPOOL_ZK_AUTH"):
        monkeypatch.delenv(name, raising=False)
    for settings in (ClientSettings, NodeSettings, CoordinatorSettings):
        with pytest.raises(ConfigError, match=reason):
            settings.from_sources(given)


def test_client_tls_settings_are_checked_together() -> None:
    with pytest.raises(ConfigError, match="go together"):
        ClientSettings(zk="z:1", redis="redis://x/0", tls_cert="c.pem")
    with pytest.raises(ConfigError, match="go together"):
        CoordinatorSettings(zk="z:1", redis="redis://x/0", tls_cert="c.pem", tls_key="k.pem")


@pytest.mark.parametrize("command", PROCESSES)
def test_help_names_every_flags_variable(command: click.Command) -> None:
    text = CliRunner().invoke(command, ["-h"], terminal_width=200).output
    options = [p for p in command.params if isinstance(p, click.Option) and p.envvar]
    assert {p.name for p in options} >= {"zk", "redis", "cluster", "token", "metrics_port"}
    for param in options:
        flag = next(opt for opt in param.opts if opt.startswith("--"))
        assert param.envvar == env_name(flag)
        assert f"env var: {param.envvar}" in text, flag
    unset = [p.name for p in command.params
             if isinstance(p, click.Option) and not p.envvar and p.name not in ("help", "version")]
    assert unset == []


def test_node_certificate_flags_have_their_own_names_and_the_old_spellings_still_work(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RINGPOOL_SERVER_TLS_CERT", raising=False)
    old = settings_of(node_main, ["--tls-cert", "n.pem", "--tls-key", "n.key", "--tls-ca", "ca"])
    new = settings_of(node_main, ["--server-tls-cert", "n.pem", "--server-tls-key", "n.key",
                                  "--server-tls-client-ca", "ca"])
    assert old == new
    assert isinstance(new, NodeSettings)
    assert (new.server_tls_cert, new.server_tls_key, new.server_tls_client_ca) == (
        "n.pem", "n.key", "ca")
    monkeypatch.setenv("RINGPOOL_SERVER_TLS_CERT", "env.pem")
    assert flags(node_main, [])["server_tls_cert"] == "env.pem"


def test_a_node_refuses_a_client_certificate_as_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext = NodeSettings(zk="z:1", redis="redis://x/0")
    with pytest.raises(ConfigError, match="RINGPOOL_TLS_CERT name a client certificate"):
        check_server_certificate(plaintext, {"RINGPOOL_TLS_CERT": "client.pem"})
    check_server_certificate(plaintext, {"RINGPOOL_TLS_CA": "ca.pem"})  # a client's CA: fine
    with_own = NodeSettings(zk="z:1", redis="redis://x/0", server_tls_cert="n.pem",
                            server_tls_key="n.key")
    check_server_certificate(with_own, {"RINGPOOL_TLS_CERT": "c.pem", "RINGPOOL_TLS_KEY": "c.key"})
    # From the command line: one line, exit 2, before anything is contacted.
    monkeypatch.setenv("RINGPOOL_TLS_CERT", "client.pem")
    result = CliRunner().invoke(node_main, ["--zk", "127.0.0.1:1", "--metrics-port", "0"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("ringpool-node: RINGPOOL_TLS_CERT name a client")


def test_max_crash_recoveries_and_result_ttl_reach_the_node_settings() -> None:
    node = settings_of(node_main, ["--max-crash-recoveries", "5", "--result-ttl", "60"])
    assert isinstance(node, NodeSettings)
    assert (node.max_crash_recoveries, node.result_ttl_s) == (5, 60)
    coordinator = settings_of(coordinator_main, ["--max-crash-recoveries", "7"])
    assert isinstance(coordinator, CoordinatorSettings)
    assert coordinator.max_crash_recoveries == 7


def test_the_readme_documents_every_flag_and_variable() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    configuration = readme[readme.index("## Configuration"):readme.index("## Deploying")]
    for command in (node_main, coordinator_main, taskctl_cli, dashboard_main):
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                flag = next(opt for opt in param.opts if opt.startswith("--"))
                assert f"`{flag}`" in configuration, (command.name, flag)
                if isinstance(param.envvar, str):
                    assert param.envvar in configuration, (command.name, param.envvar)

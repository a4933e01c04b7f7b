"""The local-cluster launcher: real ZooKeeper, Redis, nodes and coordinators on loopback.

Used by ``taskctl dev up``, ``make demo``, the benchmarks and the test suite.
ZooKeeper runs standalone, or as an ensemble (``ZooKeeperEnsemble``) whose servers
the failover tests stop, kill and start one at a time.
Every process gets a free loopback port, a temp directory, and a log file there;
every wait has a deadline; teardown is by PID. A missing server binary raises
``ConfigError`` naming the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

from ringpool.core.naming import Names
from ringpool.errors import ClusterUnavailable, ConfigError

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from ringpool.client.cluster import Cluster

INSTALL_HINT = "apt-get install -y zookeeper redis-server"
ZOOKEEPER_CLASSPATH = os.environ.get(
    "RINGPOOL_ZOOKEEPER_CLASSPATH", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
)


def missing_servers() -> list[str]:
    """What a ``LocalCluster`` needs that this machine lacks ([] when it can start one)."""
    jar = ZOOKEEPER_CLASSPATH.split(":")[-1]
    needs = {"java": shutil.which("java") is not None, jar: Path(jar).exists(),
             "redis-server": shutil.which("redis-server") is not None}
    return [name for name, found in needs.items() if not found]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until truthy; ClusterUnavailable naming ``what`` at the deadline,
    chained to the last exception ``condition`` raised (and saying it), if any."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if condition():
                return
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            reason = f" (last error: {last!r})" if last is not None else ""
            raise ClusterUnavailable(
                f"timed out after {timeout:.0f}s waiting for {what}{reason}") from last
        time.sleep(interval)


def _import_roots() -> list[str]:
    """Directories on ``sys.path`` that are not the interpreter's or its environment's."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    return [os.path.abspath(p or os.curdir) for p in sys.path
            if os.path.isdir(p or os.curdir) and not os.path.abspath(p or os.curdir).startswith(prefixes)]


PORT_CLASH_RETRIES = 3


def _lost_its_port(process: ManagedProcess) -> bool:
    """Whether the process ended because its listening port was taken."""
    tail = process.log_tail(60).lower()
    return "address already in use" in tail or "failed to bind" in tail


def _tcp_reply(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(message)
        return sock.recv(64)


def redis_cli(port: int, *args: str, password: str = "", timeout: float = 10.0) -> str:
    """One command to the Redis (or Sentinel) on a loopback port, through ``redis-cli``:
    its reply as text."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ConfigError(f"redis-cli is missing; install with: {INSTALL_HINT}")
    auth = ["-a", password, "--no-auth-warning"] if password else []
    done = subprocess.run([cli, "-p", str(port), *auth, *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.stdout


def _four_letter_word(port: int, word: bytes) -> str:
    """ZooKeeper's whole answer to a four-letter word (it closes the connection after)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(word)
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ManagedProcess:
    """A child process with its own log file (in its own session), stopped by PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str],
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self._cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal, wait up to ``timeout``, then SIGKILL; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.send_signal(sig)
        code = self.wait(timeout)
        if code is None:
            self.send_signal(signal.SIGKILL)
            code = self.wait(5.0)
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ZooKeeperServer:
    """A standalone ZooKeeper from the Debian package's jars."""

    name = "zookeeper"  # its directory under ``workdir`` and its process's name

    def __init__(self, workdir: Path, port: int | None = None, heap_mb: int = 256) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.heap_mb = heap_mb
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.workdir / self.name

    def serving(self) -> bool:
        """True once the server answers clients."""
        return _tcp_reply(self.port, b"ruok") == b"imok"

    def _quorum_config(self) -> str:
        """Config lines that make this server one of an ensemble (none: standalone)."""
        return ""

    def start(self, timeout: float = 60.0, wait: bool = True) -> ZooKeeperServer:
        """Start the server (keeping its data from an earlier start); with ``wait``,
        return once it serves."""
        java = shutil.which("java")
        jar = ZOOKEEPER_CLASSPATH.split(":")[-1]
        if java is None or not Path(jar).exists():
            raise ConfigError(f"ZooKeeper needs java and {jar}; install with: {INSTALL_HINT}")
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.data / "zoo.cfg"
        config.write_text(
            f"tickTime=500\ndataDir={self.data}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,mntr\nmaxClientCnxns=0\n"
            "minSessionTimeout=1000\nmaxSessionTimeout=60000\n" + self._quorum_config()
        )
        argv = [
            java, f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-cp", ZOOKEEPER_CLASSPATH,
            "-Dzookeeper.jmx.log4j.disable=true",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config),
        ]
        self.process = ManagedProcess(
            self.name, argv, self.data / "zookeeper.log", dict(os.environ)
        ).start()
        if wait:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        assert self.process is not None, f"{self.name} was never started"
        try:
            wait_until(self.serving, timeout, self.name, 0.1)
        except ClusterUnavailable as exc:
            raise ClusterUnavailable(f"{exc}; see {self.process.log_path}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(timeout=10.0, sig=sig)


class QuorumPeer(ZooKeeperServer):
    """One server of a ``ZooKeeperEnsemble``: its own data dir and ``myid``, serving only
    while it is the leader or a follower of a quorum."""

    def __init__(self, workdir: Path, server_id: int, servers: str, heap_mb: int) -> None:
        super().__init__(workdir, heap_mb=heap_mb)
        self.server_id = server_id
        self.servers = servers  # the ensemble's ``server.N=...`` lines
        self.name = f"zookeeper-{server_id}"

    def _quorum_config(self) -> str:
        (self.data / "myid").write_text(f"{self.server_id}\n")
        # Short limits: a follower gives up on a dead leader and an election ends in
        # seconds on loopback, well inside the clients' session timeouts.
        return f"initLimit=10\nsyncLimit=4\nreconfigEnabled=false\n{self.servers}"

    def mode(self) -> str | None:
        """``leader`` or ``follower`` while in a quorum; None otherwise (down, electing)."""
        if self.process is None or not self.process.alive():
            return None
        try:
            reply = _four_letter_word(self.port, b"srvr")
        except OSError:
            return None
        for line in reply.splitlines():
            if line.startswith("Mode: "):
                mode = line.removeprefix("Mode: ").strip()
                return mode if mode in ("leader", "follower") else None
        return None  # "This ZooKeeper instance is not currently serving requests"

    def serving(self) -> bool:
        return self.mode() is not None


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers in one quorum on loopback (client, quorum and election
    ports each free), for failover tests: stop, kill and restart one server, find the
    leader. ``address`` is the connect string naming every server."""

    def __init__(self, workdir: Path, size: int = 3, heap_mb: int = 128) -> None:
        if size < 1:
            raise ConfigError(f"an ensemble needs at least one server, not {size}")
        self.workdir = workdir
        ids = range(1, size + 1)
        servers = "".join(f"server.{i}=127.0.0.1:{free_port()}:{free_port()}\n" for i in ids)
        self.servers: dict[int, QuorumPeer] = {
            i: QuorumPeer(workdir, i, servers, heap_mb) for i in ids}

    @property
    def address(self) -> str:
        return ",".join(server.address for server in self.servers.values())

    def start(self, timeout: float = 90.0) -> ZooKeeperEnsemble:
        """Start every server; return once all serve with one leader."""
        try:
            for server in self.servers.values():
                server.start(wait=False)
            self.wait_for_quorum(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def stop_server(self, server_id: int, sig: int = signal.SIGTERM) -> None:
        self.servers[server_id].stop(sig=sig)

    def kill_server(self, server_id: int) -> None:
        """SIGKILL one server: no goodbye to its peers or clients."""
        self.stop_server(server_id, signal.SIGKILL)

    def start_server(self, server_id: int, timeout: float = 60.0, wait: bool = True) -> None:
        """Start one server again, on its ports and data; with ``wait``, return once it
        serves (which needs a quorum)."""
        self.servers[server_id].start(timeout, wait=wait)

    def modes(self) -> dict[int, str | None]:
        """Each server's mode now (see ``QuorumPeer.mode``)."""
        return {i: server.mode() for i, server in self.servers.items()}

    def leader(self) -> int | None:
        """The id of the server that leads now, if one does."""
        return next((i for i, mode in self.modes().items() if mode == "leader"), None)

    def wait_for_leader(self, timeout: float = 60.0) -> int:
        wait_until(self.leader, timeout, "a ZooKeeper leader", 0.1)
        leader = self.leader()
        assert leader is not None  # ensured by the wait, unless it died since
        return leader

    def wait_for_quorum(self, timeout: float = 60.0) -> None:
        """Wait until every running server serves and one of them leads."""
        def settled() -> bool:
            modes = [server.mode() for server in self.servers.values()
                     if server.process is not None and server.process.alive()]
            return bool(modes) and None not in modes and modes.count("leader") == 1

        try:
            wait_until(settled, timeout, "a ZooKeeper quorum", 0.1)
        except ClusterUnavailable as exc:
            logs = ", ".join(str(s.data / "zookeeper.log") for s in self.servers.values())
            raise ClusterUnavailable(f"{exc} (modes {self.modes()}); see {logs}") from None


class RedisServer:
    """A redis-server on a temp dir; AOF with ``appendfsync always`` when asked.

    With ``password`` the server runs with ``--requirepass`` and ``url`` carries it.
    ``name`` names its data directory (and log) under ``workdir``; ``extra_args`` go on
    its command line.
    """

    def __init__(
        self, workdir: Path, port: int | None = None, appendonly: bool = False,
        password: str = "", name: str = "redis", extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.name = name
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(f"redis-server is missing; install with: {INSTALL_HINT}")
        data = self.workdir / self.name
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data),
            "--save", "", "--protected-mode", "no", "--daemonize", "no",
        ]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        argv += self.extra_args
        self.process = ManagedProcess(
            self.name, argv, data / "redis.log", dict(os.environ)
        ).start()
        try:
            wait_until(
                lambda: _tcp_reply(self.port, b"PING\r\n").startswith((b"+PONG", b"-NOAUTH")),
                timeout, "Redis", 0.05,
            )
        except ClusterUnavailable as exc:
            raise ClusterUnavailable(f"{exc}; see {self.process.log_path}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(timeout=10.0, sig=sig)

    def send_signal(self, sig: int) -> None:
        """E.g. SIGSTOP and SIGCONT, to make the server stall."""
        if self.process:
            self.process.send_signal(sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: str, timeout: float = 10.0) -> str:
        """One command through ``redis-cli``: its reply as text."""
        return redis_cli(self.port, *args, password=self.password, timeout=timeout)

    def info(self, *command: str) -> dict[str, str]:
        """The fields of ``INFO <section>`` (or of another command with the same kind of
        reply, like ``CLUSTER INFO``); empty when the server does not answer."""
        try:
            reply = self.command(*(command if len(command) > 1 else ("INFO", *command)),
                                 timeout=2.0)
        except subprocess.TimeoutExpired:
            return {}
        pairs = (line.split(":", 1) for line in reply.splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}


class RedisClusterServers:
    """A Redis Cluster on loopback: ``masters`` primaries with ``replicas`` replicas each,
    joined by ``redis-cli --cluster create``; AOF (``appendfsync always``) when asked.

    ``url`` names one node: ringpool finds the others. A primary that dies is replaced by
    its replica within a few node timeouts (``wait_healthy`` waits for that).
    """

    def __init__(
        self, workdir: Path, masters: int = 3, replicas: int = 1, appendonly: bool = False,
        password: str = "", node_timeout_ms: int = 1000,
    ) -> None:
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.password = password
        cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout_ms)]
        # Each with its own bus port: port + 10000 (the default) may not exist.
        self.servers = [
            RedisServer(workdir, appendonly=appendonly, password=password,
                        name=f"redis-cluster-{i}",
                        extra_args=[*cluster_args, "--cluster-port", str(free_port())])
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 60.0) -> RedisClusterServers:
        try:
            for server in self.servers:
                server.start()
            addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
            reply = self.servers[0].command("--cluster", "create", *addresses,
                                            "--cluster-replicas", str(self.replicas),
                                            "--cluster-yes", timeout=timeout)
            if "[OK]" not in reply:
                raise ClusterUnavailable(f"redis-cli --cluster create failed:\n{reply}")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def live(self) -> list[RedisServer]:
        return [s for s in self.servers if s.process is not None and s.process.alive()]

    def primaries(self) -> list[RedisServer]:
        """The live servers that are primaries now."""
        return [s for s in self.live() if s.info("replication").get("role") == "master"]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The live servers that replicate ``primary`` now."""
        return [s for s in self.live()
                if s.info("replication").get("master_port") == str(primary.port)]

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, each slot range has one primary, and with
        every server alive every replica is in sync with its primary (only a replica
        that was can take over)."""
        live = self.live()
        if any(s.info("CLUSTER", "INFO").get("cluster_state") != "ok" for s in live):
            return False
        roles = [s.info("replication") for s in live]
        if sum(r.get("role") == "master" for r in roles) != self.masters:
            return False
        return len(live) < len(self.servers) or all(
            r.get("master_link_status") == "up" for r in roles if r.get("role") == "slave")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_until(self.healthy, timeout, "the Redis Cluster to be ok", 0.2)


    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class RedisSentinelServers:
    """A Redis primary, one replica and one Sentinel that watches them (quorum 1) as the
    service ``service``; ``url`` is the ``redis+sentinel://`` URL ringpool takes. When
    the primary dies, the Sentinel promotes the replica within a few seconds."""

    def __init__(self, workdir: Path, service: str = "ringpool", appendonly: bool = False) -> None:
        self.workdir = workdir
        self.service = service
        self.primary = RedisServer(workdir, appendonly=appendonly, name="sentinel-primary")
        self.replica = RedisServer(workdir, appendonly=appendonly, name="sentinel-replica")
        self.sentinel_port = free_port()
        self.sentinel: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}"

    def start(self, timeout: float = 60.0) -> RedisSentinelServers:
        try:
            self.primary.start()
            self.replica.extra_args = ["--replicaof", "127.0.0.1", str(self.primary.port)]
            self.replica.start()
            wait_until(lambda: self.replica.info("replication").get("master_link_status")
                       == "up", timeout, "the replica to be in sync", 0.1)
            data = self.workdir / "sentinel"
            data.mkdir(parents=True, exist_ok=True)
            config = data / "sentinel.conf"
            config.write_text(
                f"port {self.sentinel_port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"dir {data}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n")
            binary = shutil.which("redis-server")
            assert binary is not None  # the primary started
            self.sentinel = ManagedProcess("sentinel", [binary, str(config), "--sentinel"],
                                           data / "sentinel.log", dict(os.environ)).start()
            wait_until(lambda: self.primary_port() == self.primary.port, timeout,
                       "the Sentinel to watch the primary", 0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def primary_port(self) -> int | None:
        """The port of the primary the Sentinel names now."""
        lines = redis_cli(self.sentinel_port, "SENTINEL", "get-master-addr-by-name",
                          self.service, timeout=2.0).split()
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.stop(timeout=10.0)
        self.replica.stop()
        self.primary.stop()


class LocalCluster:
    """ZooKeeper + Redis (started here or given) plus coordinators and nodes as subprocesses.

    ``with LocalCluster(nodes=3, tasks=["ringpool.demo"]) as lc:`` gives ``lc.zk``,
    ``lc.redis`` and ``lc.cluster`` to pass to ``Cluster.connect``.
    ``zookeeper_servers=3`` starts a ZooKeeper ensemble (``lc.zookeeper``) instead of
    one standalone server; ``redis_cluster=True`` a Redis Cluster (3 primaries, 3
    replicas) instead of one Redis; ``appendonly`` gives Redis an append-only file
    synced on every write. ``start()`` returns
    once every node is registered in the ring and, with coordinators, once one of them
    holds the leader lock (so retries fire and ``taskctl status`` names a leader).
    ``groups={"gpu": 2}`` adds nodes ``gpu-0`` and ``gpu-1`` started with ``--group gpu``.
    """

    def __init__(
        self,
        nodes: int = 3,
        tasks: Sequence[str] = ("ringpool.demo",),
        coordinators: int = 1,
        cluster: str | None = None,
        zk: str | None = None,
        redis: str | None = None,
        workdir: Path | None = None,
        node_args: Sequence[str] = (),
        coordinator_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        appendonly: bool = False,
        redis_cluster: bool = False,
        zookeeper_servers: int = 1,
        groups: Mapping[str, int] | None = None,
    ) -> None:
        self.node_count = nodes
        self.groups = dict(groups or {})
        self.tasks = list(tasks)
        self.coordinator_count = coordinators
        self.cluster = cluster or f"c{uuid.uuid4().hex[:10]}"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ringpool-"))
        self.node_args = list(node_args)
        self.coordinator_args = list(coordinator_args)
        self.extra_env = env or {}
        self.zookeeper: ZooKeeperServer | ZooKeeperEnsemble | None = None
        if not zk:
            self.zookeeper = (ZooKeeperServer(self.workdir) if zookeeper_servers == 1
                              else ZooKeeperEnsemble(self.workdir, zookeeper_servers))
        self.redis_server: RedisServer | RedisClusterServers | None = None
        if not redis:
            self.redis_server = (RedisClusterServers(self.workdir, appendonly=appendonly)
                                 if redis_cluster else RedisServer(self.workdir, appendonly=appendonly))
        self._zk = zk
        self._redis = redis
        self.nodes: dict[str, ManagedProcess] = {}
        self._node_starts: dict[str, tuple[str, tuple[str, ...]]] = {}  # name -> (id, extra args)
        self.node_ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}
        self.coordinators: list[ManagedProcess] = []
        self._zk_client: KazooClient | None = None

    @property
    def zk(self) -> str:
        return self._zk or (self.zookeeper.address if self.zookeeper else "")

    @property
    def redis(self) -> str:
        return self._redis or (self.redis_server.url if self.redis_server else "")

    def env(self) -> dict[str, str]:
        """Settings that point a ``Cluster.connect()`` or ``taskctl`` at this cluster."""
        return {"RINGPOOL_ZK": self.zk, "RINGPOOL_REDIS": self.redis,
                "RINGPOOL_CLUSTER": self.cluster}

    def connect(self, **options: Any) -> Cluster:
        """A ``Cluster`` client of this cluster (``with lc.connect() as cluster:``)."""
        from ringpool.client.cluster import Cluster

        return Cluster.connect(zk=self.zk, redis=self.redis, cluster=self.cluster, **options)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        # Children import the same tree as the launcher (a checkout, a test run's paths,
        # or an installed environment): its import roots outside the interpreter's own.
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([*_import_roots(), *inherited])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> LocalCluster:
        try:
            if self.zookeeper:
                self.zookeeper.start()
            if self.redis_server:
                self.redis_server.start()
            for _ in range(self.coordinator_count):
                self.start_coordinator()
            for index in range(self.node_count):
                self.start_node(f"node-{index}", wait=False)
            for group, count in self.groups.items():
                for index in range(count):
                    self.start_node(f"{group}-{index}", wait=False, extra=["--group", group])
            self.wait_for_members(set(self.nodes), timeout)
            if self.coordinators:
                self.wait_for_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(
        self, node_id: str, wait: bool = True, timeout: float = 60.0, extra: Sequence[str] = (),
        name: str | None = None,
    ) -> ManagedProcess:
        """Start a node process; ``name`` (default: the node id) keys its process, port and
        log, so that a second process may run under one node id."""
        name = name or node_id
        self._node_starts[name] = (node_id, tuple(extra))
        port = self.node_ports.get(name) or free_port()
        self.node_ports[name] = port
        metrics_port = self.metrics_ports.setdefault(name, free_port())
        argv = [
            sys.executable, "-m", "ringpool_node", "--node-id", node_id,
            "--listen", f"127.0.0.1:{port}", "--tasks", ",".join(self.tasks),
            "--metrics-port", str(metrics_port),
            *self.node_args, *extra,
        ]
        process = ManagedProcess(
            name, argv, self.workdir / f"{name}.log", self._child_env()
        ).start()
        self.nodes[name] = process
        if wait:
            self.wait_for_members({node_id}, timeout)
        return process

    def start_coordinator(self) -> ManagedProcess:
        name = f"coordinator-{len(self.coordinators)}"
        metrics_port = free_port()
        self.metrics_ports[name] = metrics_port
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "ringpool_coordinator", "--metrics-port", str(metrics_port),
             *self.coordinator_args],
            self.workdir / f"{name}.log", self._child_env(),
        ).start()
        self.coordinators.append(process)
        return process

    def _zookeeper(self) -> KazooClient:
        """The launcher's own ZooKeeper client, opened on first use."""
        if self._zk_client is None:
            from ringpool.core.membership import connect_zookeeper

            self._zk_client = connect_zookeeper(self.zk, timeout=10.0)
        return self._zk_client

    def members(self) -> set[str]:
        """Node ids registered in ZooKeeper now."""
        zk = self._zookeeper()
        path = Names(self.cluster).members
        return set(zk.get_children(path)) if zk.exists(path) else set()

    def member_epochs(self) -> dict[str, int]:
        """Node id -> the epoch (member znode's creation zxid) of each node registered now;
        a node that registered again since an earlier call shows a new one."""
        zk = self._zookeeper()
        path = Names(self.cluster).members
        epochs = {}
        for node_id in zk.get_children(path) if zk.exists(path) else []:
            stat = zk.exists(f"{path}/{node_id}")
            if stat is not None:
                epochs[node_id] = stat.czxid
        return epochs

    def election_contenders(self) -> list[str]:
        """Lock znodes under the coordinators' election path now, one per contender."""
        zk = self._zookeeper()
        path = Names(self.cluster).election
        return list(zk.get_children(path)) if zk.exists(path) else []

    def wait_for_leader(self, timeout: float = 60.0) -> None:
        """Wait until a coordinator leads, or is about to.

        The election is kazoo's lock recipe: each contender creates a sequential
        ephemeral znode and the lowest one holds the lock. That contender sees no
        predecessor and takes the lock at once, so a first child means a leader
        within moments, not merely a contender waiting for one.
        """
        try:
            wait_until(self.election_contenders, timeout, "a coordinator to lead", 0.1)
        except ClusterUnavailable as exc:
            tails = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail()}"
                              for p in self.coordinators)
            raise ClusterUnavailable(f"{exc}:\n{tails}") from None

    def wait_for_members(self, node_ids: set[str], timeout: float = 60.0) -> None:
        clashes = 0

        def ready() -> bool:
            nonlocal clashes
            for node_id in node_ids:
                process = self.nodes[node_id]
                if process.alive():
                    continue
                if clashes < PORT_CLASH_RETRIES and _lost_its_port(process):
                    # Another process took the free port we picked before the node bound it.
                    clashes += 1
                    self.node_ports.pop(node_id, None)
                    self.metrics_ports.pop(node_id, None)
                    started_as, extra = self._node_starts[node_id]
                    self.start_node(started_as, wait=False, extra=extra, name=node_id)
                    continue
                raise ClusterUnavailable(
                    f"{node_id} exited early; log {process.log_path}:\n{process.log_tail()}"
                )
            return node_ids <= self.members()

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() >= deadline:
                tails = "\n".join(
                    f"--- {n} ({self.nodes[n].log_path}):\n{self.nodes[n].log_tail()}"
                    for n in node_ids
                )
                raise ClusterUnavailable(f"nodes {sorted(node_ids)} did not register:\n{tails}")
            time.sleep(0.1)

    def stop_node(self, node_id: str, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        return self.nodes[node_id].stop(timeout=timeout, sig=sig)

    def stop(self) -> None:
        if self._zk_client is not None:
            self._zk_client.stop()
            self._zk_client.close()
            self._zk_client = None
        for process in [*self.nodes.values(), *self.coordinators]:
            process.stop(timeout=15.0)
        if self.redis_server:
            self.redis_server.stop()
        if self.zookeeper:
            self.zookeeper.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

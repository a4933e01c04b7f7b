"""The nemesis: injects each fault into a ``LocalCluster``, holds it, heals it.

It is also the nodes' supervisor (as Kubernetes would be): a node or coordinator
that exits while no fault holds it down is started again, under the same id, and
the exit is recorded. Every node process is remembered (``lives``), with when and
how it ended, so the checker knows which executions a death cut short.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ringpool.testing.local import LocalCluster, ManagedProcess, RedisServer, ZooKeeperServer
from tests.nemesis.proxy import CuttableProxy
from tests.nemesis.schedule import Fault, FaultKind

READY_TIMEOUT_S = 60.0
#: Faults after which the node is a new process: it must register again, with a new epoch.
REPLACED = frozenset({FaultKind.KILL, FaultKind.TERM, FaultKind.RESTART})
SUPERVISE_EVERY_S = 0.5


@dataclass
class Life:
    """One process of a node: from its start to its end (None: still running)."""

    node: str
    pid: int
    started: float
    ended: float | None = None
    how: str = ""  # what ended it: a fault, or the exit code it chose


@dataclass
class FaultRun:
    """What happened when a fault ran: when it began, was healed, the cluster was ready."""

    fault: Fault
    began: float
    healed: float = 0.0
    ready: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def describe(self) -> str:
        return f"{self.fault.kind} {self.fault.target}"


class Nemesis:
    def __init__(
        self, local: LocalCluster, proxy: CuttableProxy, node_extra: dict[str, Sequence[str]],
        coordinators: int, drain_timeout_s: float, log: Callable[[str], None] = print,
    ) -> None:
        self.local = local
        self.proxy = proxy
        self.node_extra = node_extra
        self.coordinators = coordinators
        self.drain_timeout_s = drain_timeout_s
        self.log = log
        self.lives: dict[int, Life] = {}
        self.unprompted: list[tuple[float, str]] = []  # (when, what): exits no fault caused
        self._procs: dict[int, ManagedProcess] = {}
        self._held: set[str] = set()  # nodes (or "coordinator") a fault keeps down
        self._fault_ended: set[str] = set()  # coordinators whose end is accounted for
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="nemesis-supervisor",
                                            daemon=True)

    # -- processes -----------------------------------------------------------------

    def adopt(self) -> None:
        """Take over the processes the cluster started, then supervise them."""
        with self._lock:
            for node_id, process in self.local.nodes.items():
                self._remember(node_id, process)
        self._supervisor.start()

    def close(self) -> None:
        self._stop.set()
        self._supervisor.join(timeout=10)

    def start_node(self, node_id: str) -> None:
        with self._lock:
            process = self.local.start_node(node_id, wait=False,
                                            extra=self.node_extra.get(node_id, ()))
            self._remember(node_id, process)

    def _remember(self, node_id: str, process: ManagedProcess) -> None:
        self.lives[process.pid] = Life(node_id, process.pid, time.time())
        self._procs[process.pid] = process

    def _ended(self, process: ManagedProcess, how: str) -> None:
        life = self.lives[process.pid]
        if life.ended is None:
            life.ended, life.how = time.time(), how

    def _kill(self, node_id: str) -> None:
        process = self.local.nodes[node_id]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self._ended(process, "kill -9")

    def running_pids(self) -> dict[int, str]:
        """Node processes alive now, by pid."""
        with self._lock:
            return {pid: self.lives[pid].node for pid, p in self._procs.items() if p.alive()}

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_EVERY_S):
            with self._lock:
                self.supervise_once()

    def supervise_once(self) -> None:
        """Start again what exited with no fault holding it down."""
        for node_id, process in list(self.local.nodes.items()):
            if process.pid not in self.lives:  # started again by the launcher itself
                self._remember(node_id, process)
            if process.alive() or node_id in self._held:
                continue
            how = f"exited {process.proc.returncode if process.proc else '?'} unprompted"
            self._ended(process, how)
            self._unprompted(f"{node_id} (pid {process.pid}) {how}; started again")
            self.start_node(node_id)
        for process in self.local.coordinators:
            if not process.alive() and process.name not in self._fault_ended:
                self._fault_ended.add(process.name)  # accounted for, once
                code = process.proc.returncode if process.proc else "?"
                self._unprompted(f"{process.name} exited {code} unprompted")
        if "coordinator" not in self._held and \
                sum(c.alive() for c in self.local.coordinators) < self.coordinators:
            self.local.start_coordinator()

    def _unprompted(self, what: str) -> None:
        self.unprompted.append((time.time(), what))
        self.log(f"  supervisor: {what}")

    # -- the cluster's state -------------------------------------------------------

    def leader(self) -> ManagedProcess | None:
        """The coordinator whose metrics say it leads, if any answers so."""
        for process in self.local.coordinators:
            if not process.alive():
                continue
            port = self.local.metrics_ports[process.name]
            try:
                scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                text = scrape.read().decode()
            except OSError:
                continue
            if any(line.split() == ["ringpool_coordinator_leader", "1.0"]
                   for line in text.splitlines()):
                return process
        return None

    def wait_ready(self, replaced: Mapping[str, int] | None = None,
                   timeout: float = READY_TIMEOUT_S) -> str:
        """'' once every node is in the ring and a coordinator leads, else what is missing.

        A node in ``replaced`` (node id -> its epoch before the fault) must have
        registered again, with a new epoch: its old znode may outlive its process.
        """
        replaced = replaced or {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                epochs = self.local.member_epochs()
                missing = sorted(n for n in self.local.nodes
                                 if epochs.get(n, replaced.get(n)) == replaced.get(n))
            except Exception as exc:  # ZooKeeper not answering the launcher yet
                missing = [f"(members unreadable: {type(exc).__name__})"]
            leader = self.leader()
            if not missing and leader is not None:
                return ""
            if time.monotonic() >= deadline:
                return (f"not ready after {timeout:.0f}s: "
                        + (f"not in the ring: {', '.join(missing)}" if missing else "")
                        + ("; " if missing and leader is None else "")
                        + ("no leader" if leader is None else ""))
            time.sleep(0.2)

    # -- faults ----------------------------------------------------------------------

    def run(self, fault: Fault) -> FaultRun:
        """Inject ``fault``, hold it, heal it, and wait for the cluster to be whole again."""
        replaced = {}
        if fault.kind in REPLACED and fault.target in (epochs := self._epochs()):
            replaced[fault.target] = epochs[fault.target]
        done = FaultRun(fault, began=time.time())
        with self._lock:
            self._inject(fault, done)
        time.sleep(fault.hold_s)
        with self._lock:
            self._heal(fault)
        done.healed = time.time()
        missing = self.wait_ready(replaced)
        done.ready = time.time()
        if missing:
            done.notes.append(missing)
        return done

    def _epochs(self) -> dict[str, int]:
        try:
            return self.local.member_epochs()
        except Exception:  # ZooKeeper not answering: nothing to compare with
            return {}

    def _inject(self, fault: Fault, done: FaultRun) -> None:
        kind, target = fault.kind, fault.target
        if kind in REPLACED:
            self._held.add(target)
            if kind is FaultKind.TERM:
                self._drain(target, done)
            else:
                self._kill(target)
        elif kind is FaultKind.PAUSE:
            self.local.nodes[target].send_signal(signal.SIGSTOP)
        elif kind is FaultKind.LEADER:
            self._held.add("coordinator")
            self._kill_leader(done)
        elif kind is FaultKind.REDIS:
            self._redis().stop(sig=signal.SIGKILL)
        elif kind is FaultKind.ZOOKEEPER:
            self._zookeeper().stop()
        else:
            self.proxy.cut()

    def _heal(self, fault: Fault) -> None:
        kind, target = fault.kind, fault.target
        if kind in REPLACED:
            self._held.discard(target)
            self.start_node(target)
        elif kind is FaultKind.PAUSE:
            self.local.nodes[target].send_signal(signal.SIGCONT)
        elif kind is FaultKind.LEADER:
            self._held.discard("coordinator")
            self.supervise_once()  # starts the replacement
        elif kind is FaultKind.REDIS:
            self._redis().start()
        elif kind is FaultKind.ZOOKEEPER:
            self._zookeeper().start()
        elif kind is FaultKind.CUT:
            self.proxy.restore()

    def _redis(self) -> RedisServer:
        redis_server = self.local.redis_server
        assert isinstance(redis_server, RedisServer), "the nemesis runs its own (single) Redis"
        return redis_server

    def _zookeeper(self) -> ZooKeeperServer:
        zookeeper = self.local.zookeeper
        assert isinstance(zookeeper, ZooKeeperServer), "the nemesis runs its own standalone ZooKeeper"
        return zookeeper

    def _drain(self, node_id: str, done: FaultRun) -> None:
        process = self.local.nodes[node_id]
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(self.drain_timeout_s + 20)
        if code is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            done.notes.append(f"no exit {self.drain_timeout_s + 20:.0f}s after SIGTERM: killed")
            self._ended(process, "kill -9 after a drain that did not end")
            return
        done.notes.append(f"drained and exited {code} in {time.monotonic() - asked:.1f}s")
        self._ended(process, f"term (exit {code})")

    def _kill_leader(self, done: FaultRun) -> None:
        leader = self.leader()
        if leader is None:
            done.notes.append("no coordinator said it led: killed none")
            return
        self._fault_ended.add(leader.name)
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        done.notes.append(f"killed {leader.name}")

    def heal_all(self) -> None:
        """Undo whatever a fault left behind (an interrupted run): the cluster whole again."""
        with self._lock:
            self._held.clear()
            self.proxy.restore()
            for process in self.local.nodes.values():
                process.send_signal(signal.SIGCONT)
            for server in (self._zookeeper(), self._redis()):
                if not (server.process and server.process.alive()):
                    server.start()
            self.supervise_once()

"""ringpool: a distributed task cluster with consistent-hash routing.

    from ringpool import Cluster, Task, task

    with Cluster.connect(zk="127.0.0.1:2181", redis="redis://127.0.0.1:6379/0") as cluster:
        handle = cluster.dispatch("user:42", Task("demo.add", args=(1, 2)))
        handle.result(timeout=10)
"""

from ringpool.client.async_cluster import AsyncCluster, AsyncTaskHandle
from ringpool.client.cluster import Cluster, TaskHandle
from ringpool.core.protocol import TaskState
from ringpool.core.schedule import periodic
from ringpool.errors import (
    ClusterUnavailable,
    ConfigError,
    DispatchError,
    InvalidKey,
    InvalidSchedule,
    InvalidTask,
    NoNodesAvailable,
    NotRedeliverable,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    ResultTimeout,
    RingpoolError,
    ScheduleNotFound,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskFailed,
    TaskIdTaken,
    TaskNotFound,
    TooManyHops,
    Unauthenticated,
    UnknownTask,
)
from ringpool.store.schedules import StoredSchedule
from ringpool.task import PermanentError, Retry, RetryPolicy, Task, TaskContext, current_task, task

__version__ = "0.2.0"

__all__ = [
    "AsyncCluster",
    "AsyncTaskHandle",
    "Cluster",
    "ClusterUnavailable",
    "ConfigError",
    "DispatchError",
    "InvalidKey",
    "InvalidSchedule",
    "InvalidTask",
    "NoNodesAvailable",
    "NotRedeliverable",
    "Overloaded",
    "PayloadTooLarge",
    "PermanentError",
    "PermissionDenied",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "RingpoolError",
    "ScheduleNotFound",
    "StoredSchedule",
    "Task",
    "TaskAlreadyFinished",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskIdTaken",
    "TaskNotFound",
    "TaskState",
    "TooManyHops",
    "Unauthenticated",
    "UnknownTask",
    "current_task",
    "periodic",
    "task",
]

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_CLIENT: _ClassVar[Source]
    SOURCE_RETRY: _ClassVar[Source]
    SOURCE_REPLAY: _ClassVar[Source]
    SOURCE_SCHEDULED: _ClassVar[Source]

class AckCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_UNSPECIFIED: _ClassVar[AckCode]
    ACCEPTED: _ClassVar[AckCode]
    DUPLICATE: _ClassVar[AckCode]
    WRONG_OWNER: _ClassVar[AckCode]
    DRAINING: _ClassVar[AckCode]
    OVERLOADED: _ClassVar[AckCode]
    UNKNOWN_TASK: _ClassVar[AckCode]
    INVALID_ARGUMENT: _ClassVar[AckCode]
    PAYLOAD_TOO_LARGE: _ClassVar[AckCode]
    INVALID_KEY: _ClassVar[AckCode]
    NOT_REDELIVERABLE: _ClassVar[AckCode]
    INTERNAL: _ClassVar[AckCode]
    ID_TAKEN: _ClassVar[AckCode]
    PERMISSION_DENIED: _ClassVar[AckCode]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATE_UNSPECIFIED: _ClassVar[TaskState]
    QUEUED: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    SUCCEEDED: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    RETRY_SCHEDULED: _ClassVar[TaskState]
    SCHEDULED: _ClassVar[TaskState]
    CANCELLED: _ClassVar[TaskState]
SOURCE_CLIENT: Source
SOURCE_RETRY: Source
SOURCE_REPLAY: Source
SOURCE_SCHEDULED: Source
ACK_UNSPECIFIED: AckCode
ACCEPTED: AckCode
DUPLICATE: AckCode
WRONG_OWNER: AckCode
DRAINING: AckCode
OVERLOADED: AckCode
UNKNOWN_TASK: AckCode
INVALID_ARGUMENT: AckCode
PAYLOAD_TOO_LARGE: AckCode
INVALID_KEY: AckCode
NOT_REDELIVERABLE: AckCode
INTERNAL: AckCode
ID_TAKEN: AckCode
PERMISSION_DENIED: AckCode
STATE_UNSPECIFIED: TaskState
QUEUED: TaskState
RUNNING: TaskState
SUCCEEDED: TaskState
FAILED: TaskState
RETRY_SCHEDULED: TaskState
SCHEDULED: TaskState
CANCELLED: TaskState

class TaskEnvelope(_message.Message):
    __slots__ = ("task_id", "key", "name", "payload", "codec", "idempotency_key", "attempt", "max_retries", "timeout_s", "priority", "ordered", "headers", "ring_version", "source", "eta", "schedule", "group", "result_ttl_s", "reply_to")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ORDERED_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    RING_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    RESULT_TTL_S_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    key: str
    name: str
    payload: bytes
    codec: str
    idempotency_key: str
    attempt: int
    max_retries: int
    timeout_s: float
    priority: int
    ordered: bool
    headers: _containers.ScalarMap[str, str]
    ring_version: int
    source: Source
    eta: float
    schedule: str
    group: str
    result_ttl_s: int
    reply_to: str
    def __init__(self, task_id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., payload: _Optional[bytes] = ..., codec: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., attempt: _Optional[int] = ..., max_retries: _Optional[int] = ..., timeout_s: _Optional[float] = ..., priority: _Optional[int] = ..., ordered: _Optional[bool] = ..., headers: _Optional[_Mapping[str, str]] = ..., ring_version: _Optional[int] = ..., source: _Optional[_Union[Source, str]] = ..., eta: _Optional[float] = ..., schedule: _Optional[str] = ..., group: _Optional[str] = ..., result_ttl_s: _Optional[int] = ..., reply_to: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("batch_id", "tasks", "responses_seen")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_SEEN_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    tasks: _containers.RepeatedCompositeFieldContainer[TaskEnvelope]
    responses_seen: int
    def __init__(self, batch_id: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[TaskEnvelope, _Mapping]]] = ..., responses_seen: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("task_id", "code", "original_task_id", "state", "ring_version", "message", "retry_after_s", "node_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RING_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    code: AckCode
    original_task_id: str
    state: TaskState
    ring_version: int
    message: str
    retry_after_s: float
    node_id: str
    def __init__(self, task_id: _Optional[str] = ..., code: _Optional[_Union[AckCode, str]] = ..., original_task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., ring_version: _Optional[int] = ..., message: _Optional[str] = ..., retry_after_s: _Optional[float] = ..., node_id: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "state", "result", "error_type", "error_message", "traceback", "node_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    result: bytes
    error_type: str
    error_message: str
    traceback: str
    node_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., result: _Optional[bytes] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., traceback: _Optional[str] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("task_id", "value", "meta", "at")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    value: float
    meta: bytes
    at: float
    def __init__(self, task_id: _Optional[str] = ..., value: _Optional[float] = ..., meta: _Optional[bytes] = ..., at: _Optional[float] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("batch_id", "acks", "results", "progress")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    results: _containers.RepeatedCompositeFieldContainer[TaskResult]
    progress: _containers.RepeatedCompositeFieldContainer[TaskProgress]
    def __init__(self, batch_id: _Optional[int] = ..., acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[TaskResult, _Mapping]]] = ..., progress: _Optional[_Iterable[_Union[TaskProgress, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("kind", "workers", "min_workers", "max_workers", "running", "queued")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    workers: int
    min_workers: int
    max_workers: int
    running: int
    queued: int
    def __init__(self, kind: _Optional[str] = ..., workers: _Optional[int] = ..., min_workers: _Optional[int] = ..., max_workers: _Optional[int] = ..., running: _Optional[int] = ..., queued: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "address", "ring_version", "in_flight", "queued", "running", "draining", "started_at", "counters", "version", "group", "pools", "runs_finished", "run_seconds_total", "zookeeper_state", "ring_stale_s")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RING_VERSION_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    RUN_SECONDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ZOOKEEPER_STATE_FIELD_NUMBER: _ClassVar[int]
    RING_STALE_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    ring_version: int
    in_flight: int
    queued: int
    running: int
    draining: bool
    started_at: float
    counters: _containers.ScalarMap[str, int]
    version: str
    group: str
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    runs_finished: int
    run_seconds_total: float
    zookeeper_state: str
    ring_stale_s: float
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., ring_version: _Optional[int] = ..., in_flight: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., draining: _Optional[bool] = ..., started_at: _Optional[float] = ..., counters: _Optional[_Mapping[str, int]] = ..., version: _Optional[str] = ..., group: _Optional[str] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., runs_finished: _Optional[int] = ..., run_seconds_total: _Optional[float] = ..., zookeeper_state: _Optional[str] = ..., ring_stale_s: _Optional[float] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("timeout_s",)
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    timeout_s: float
    def __init__(self, timeout_s: _Optional[float] = ...) -> None: ...

class DrainResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("per_second", "burst")
    PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    per_second: int
    burst: int
    def __init__(self, per_second: _Optional[int] = ..., burst: _Optional[int] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("schedule", "exponential")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_FIELD_NUMBER: _ClassVar[int]
    schedule: ScheduleRetryPolicy
    exponential: ExponentialRetryPolicy
    def __init__(self, schedule: _Optional[_Union[ScheduleRetryPolicy, _Mapping]] = ..., exponential: _Optional[_Union[ExponentialRetryPolicy, _Mapping]] = ...) -> None: ...

class ScheduleRetryPolicy(_message.Message):
    __slots__ = ("delays",)
    DELAYS_FIELD_NUMBER: _ClassVar[int]
    delays: _containers.RepeatedCompositeFieldContainer[_duration_pb2.Duration]
    def __init__(self, delays: _Optional[_Iterable[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]]] = ...) -> None: ...

class ExponentialRetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "multiplier", "max_backoff")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    multiplier: float
    max_backoff: _duration_pb2.Duration
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class NoAuth(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BasicAuth(_message.Message):
    __slots__ = ("username", "password", "password_hint")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_HINT_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    password_hint: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., password_hint: _Optional[str] = ...) -> None: ...

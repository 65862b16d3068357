import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_RETRYING: _ClassVar[DeliveryState]
    DELIVERY_STATE_SUCCEEDED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]
    DELIVERY_STATE_CANCELLED: _ClassVar[DeliveryState]

class AttemptErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_ERROR_KIND_UNSPECIFIED: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_TIMEOUT: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_CONNECT: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_DNS: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_TLS: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_FORBIDDEN_ADDRESS: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_BODY_TOO_LARGE: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_REDIRECT: _ClassVar[AttemptErrorKind]
    ATTEMPT_ERROR_KIND_HTTP_STATUS: _ClassVar[AttemptErrorKind]

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SUCCEEDED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FAILED: _ClassVar[AttemptOutcome]

class AttemptOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_ORDER_UNSPECIFIED: _ClassVar[AttemptOrder]
    ATTEMPT_ORDER_NEWEST: _ClassVar[AttemptOrder]
    ATTEMPT_ORDER_OLDEST: _ClassVar[AttemptOrder]
    ATTEMPT_ORDER_DURATION: _ClassVar[AttemptOrder]
    ATTEMPT_ORDER_STATUS_CODE: _ClassVar[AttemptOrder]
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_RETRYING: DeliveryState
DELIVERY_STATE_SUCCEEDED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState
DELIVERY_STATE_CANCELLED: DeliveryState
ATTEMPT_ERROR_KIND_UNSPECIFIED: AttemptErrorKind
ATTEMPT_ERROR_KIND_TIMEOUT: AttemptErrorKind
ATTEMPT_ERROR_KIND_CONNECT: AttemptErrorKind
ATTEMPT_ERROR_KIND_DNS: AttemptErrorKind
ATTEMPT_ERROR_KIND_TLS: AttemptErrorKind
ATTEMPT_ERROR_KIND_FORBIDDEN_ADDRESS: AttemptErrorKind
ATTEMPT_ERROR_KIND_BODY_TOO_LARGE: AttemptErrorKind
ATTEMPT_ERROR_KIND_REDIRECT: AttemptErrorKind
ATTEMPT_ERROR_KIND_HTTP_STATUS: AttemptErrorKind
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_SUCCEEDED: AttemptOutcome
ATTEMPT_OUTCOME_FAILED: AttemptOutcome
ATTEMPT_ORDER_UNSPECIFIED: AttemptOrder
ATTEMPT_ORDER_NEWEST: AttemptOrder
ATTEMPT_ORDER_OLDEST: AttemptOrder
ATTEMPT_ORDER_DURATION: AttemptOrder
ATTEMPT_ORDER_STATUS_CODE: AttemptOrder

class Delivery(_message.Message):
    __slots__ = ("id", "project_id", "event_id", "subscription_id", "destination_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "replay_of", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    event_id: str
    subscription_id: str
    destination_id: str
    state: DeliveryState
    attempt_count: int
    next_attempt_time: _timestamp_pb2.Timestamp
    last_status_code: int
    last_error: str
    replay_of: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., event_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempt_count: _Optional[int] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_status_code: _Optional[int] = ..., last_error: _Optional[str] = ..., replay_of: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("id", "project_id", "delivery_id", "event_id", "destination_id", "number", "request", "response", "error", "outcome", "start_time", "duration")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    delivery_id: str
    event_id: str
    destination_id: str
    number: int
    request: AttemptRequest
    response: AttemptResponse
    error: AttemptError
    outcome: AttemptOutcome
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., delivery_id: _Optional[str] = ..., event_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., number: _Optional[int] = ..., request: _Optional[_Union[AttemptRequest, _Mapping]] = ..., response: _Optional[_Union[AttemptResponse, _Mapping]] = ..., error: _Optional[_Union[AttemptError, _Mapping]] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AttemptRequest(_message.Message):
    __slots__ = ("url", "method", "headers", "body", "body_truncated", "body_size")
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    url: str
    method: str
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    body: bytes
    body_truncated: bool
    body_size: int
    def __init__(self, url: _Optional[str] = ..., method: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., body_truncated: _Optional[bool] = ..., body_size: _Optional[int] = ...) -> None: ...

class AttemptResponse(_message.Message):
    __slots__ = ("status_code", "headers", "body", "body_truncated")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    body: bytes
    body_truncated: bool
    def __init__(self, status_code: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., body_truncated: _Optional[bool] = ...) -> None: ...

class AttemptError(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: AttemptErrorKind
    message: str
    def __init__(self, kind: _Optional[_Union[AttemptErrorKind, str]] = ..., message: _Optional[str] = ...) -> None: ...

class GetDeliveryRequest(_message.Message):
    __slots__ = ("project_id", "delivery_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    delivery_id: str
    def __init__(self, project_id: _Optional[str] = ..., delivery_id: _Optional[str] = ...) -> None: ...

class GetDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token", "event_id", "destination_id", "subscription_id", "state")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    event_id: str
    destination_id: str
    subscription_id: str
    state: DeliveryState
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., event_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetryDeliveryRequest(_message.Message):
    __slots__ = ("project_id", "delivery_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    delivery_id: str
    def __init__(self, project_id: _Optional[str] = ..., delivery_id: _Optional[str] = ...) -> None: ...

class RetryDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class CancelDeliveryRequest(_message.Message):
    __slots__ = ("project_id", "delivery_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    delivery_id: str
    def __init__(self, project_id: _Optional[str] = ..., delivery_id: _Optional[str] = ...) -> None: ...

class CancelDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class GetAttemptRequest(_message.Message):
    __slots__ = ("project_id", "attempt_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    attempt_id: str
    def __init__(self, project_id: _Optional[str] = ..., attempt_id: _Optional[str] = ...) -> None: ...

class GetAttemptResponse(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: Attempt
    def __init__(self, attempt: _Optional[_Union[Attempt, _Mapping]] = ...) -> None: ...

class ListAttemptsRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token", "delivery_id", "event_id", "destination_id", "outcome", "start_time", "end_time", "order_by")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    delivery_id: str
    event_id: str
    destination_id: str
    outcome: AttemptOutcome
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    order_by: AttemptOrder
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., delivery_id: _Optional[str] = ..., event_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[_Union[AttemptOrder, str]] = ...) -> None: ...

class ListAttemptsResponse(_message.Message):
    __slots__ = ("attempts", "next_page_token")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    next_page_token: str
    def __init__(self, attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loft.v1 import common_pb2 as _common_pb2
from loft.v1 import delivery_service_pb2 as _delivery_service_pb2
from loft.v1 import destination_service_pb2 as _destination_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATUS_UNSPECIFIED: _ClassVar[EventStatus]
    EVENT_STATUS_PENDING: _ClassVar[EventStatus]
    EVENT_STATUS_DELIVERED: _ClassVar[EventStatus]
    EVENT_STATUS_FAILED: _ClassVar[EventStatus]
    EVENT_STATUS_NO_ROUTE: _ClassVar[EventStatus]

class EventView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_VIEW_UNSPECIFIED: _ClassVar[EventView]
    EVENT_VIEW_BASIC: _ClassVar[EventView]
    EVENT_VIEW_FULL: _ClassVar[EventView]

class ActivityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVITY_KIND_UNSPECIFIED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_EVENT_RECEIVED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_ATTEMPT_FINISHED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_DELIVERY_SUCCEEDED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_DELIVERY_FAILED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_DESTINATION_STATE_CHANGED: _ClassVar[ActivityKind]
    ACTIVITY_KIND_RESOURCE_CHANGED: _ClassVar[ActivityKind]

class ChangeAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_ACTION_UNSPECIFIED: _ClassVar[ChangeAction]
    CHANGE_ACTION_CREATED: _ClassVar[ChangeAction]
    CHANGE_ACTION_UPDATED: _ClassVar[ChangeAction]
    CHANGE_ACTION_DELETED: _ClassVar[ChangeAction]
EVENT_STATUS_UNSPECIFIED: EventStatus
EVENT_STATUS_PENDING: EventStatus
EVENT_STATUS_DELIVERED: EventStatus
EVENT_STATUS_FAILED: EventStatus
EVENT_STATUS_NO_ROUTE: EventStatus
EVENT_VIEW_UNSPECIFIED: EventView
EVENT_VIEW_BASIC: EventView
EVENT_VIEW_FULL: EventView
ACTIVITY_KIND_UNSPECIFIED: ActivityKind
ACTIVITY_KIND_EVENT_RECEIVED: ActivityKind
ACTIVITY_KIND_ATTEMPT_FINISHED: ActivityKind
ACTIVITY_KIND_DELIVERY_SUCCEEDED: ActivityKind
ACTIVITY_KIND_DELIVERY_FAILED: ActivityKind
ACTIVITY_KIND_DESTINATION_STATE_CHANGED: ActivityKind
ACTIVITY_KIND_RESOURCE_CHANGED: ActivityKind
CHANGE_ACTION_UNSPECIFIED: ChangeAction
CHANGE_ACTION_CREATED: ChangeAction
CHANGE_ACTION_UPDATED: ChangeAction
CHANGE_ACTION_DELETED: ChangeAction

class Event(_message.Message):
    __slots__ = ("id", "project_id", "source_id", "type", "body", "content_type", "json", "method", "path", "query", "headers", "source_ip", "idempotency_key", "labels", "occur_time", "receive_time", "deliver_time", "status", "deliveries_total", "deliveries_succeeded", "deliveries_failed", "deliveries_pending", "body_size")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVER_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FAILED_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_PENDING_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    source_id: str
    type: str
    body: bytes
    content_type: str
    json: _struct_pb2.Value
    method: str
    path: str
    query: str
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    source_ip: str
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    occur_time: _timestamp_pb2.Timestamp
    receive_time: _timestamp_pb2.Timestamp
    deliver_time: _timestamp_pb2.Timestamp
    status: EventStatus
    deliveries_total: int
    deliveries_succeeded: int
    deliveries_failed: int
    deliveries_pending: int
    body_size: int
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., source_id: _Optional[str] = ..., type: _Optional[str] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., json: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., query: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., source_ip: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deliver_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[EventStatus, str]] = ..., deliveries_total: _Optional[int] = ..., deliveries_succeeded: _Optional[int] = ..., deliveries_failed: _Optional[int] = ..., deliveries_pending: _Optional[int] = ..., body_size: _Optional[int] = ...) -> None: ...

class RawPayload(_message.Message):
    __slots__ = ("body", "content_type")
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    content_type: str
    def __init__(self, body: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ("project_id", "type", "json", "raw", "idempotency_key", "labels", "occur_time", "deliver_time")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVER_TIME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    type: str
    json: _struct_pb2.Value
    raw: RawPayload
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    occur_time: _timestamp_pb2.Timestamp
    deliver_time: _timestamp_pb2.Timestamp
    def __init__(self, project_id: _Optional[str] = ..., type: _Optional[str] = ..., json: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., raw: _Optional[_Union[RawPayload, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deliver_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = ("event", "deliveries_created", "duplicate")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_CREATED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    event: Event
    deliveries_created: int
    duplicate: bool
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., deliveries_created: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("project_id", "event_id", "view")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_id: str
    view: EventView
    def __init__(self, project_id: _Optional[str] = ..., event_id: _Optional[str] = ..., view: _Optional[_Union[EventView, str]] = ...) -> None: ...

class GetEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token", "source_id", "type", "status", "start_time", "end_time", "search", "view")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    source_id: str
    type: str
    status: EventStatus
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    search: str
    view: EventView
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., source_id: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[_Union[EventStatus, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., search: _Optional[str] = ..., view: _Optional[_Union[EventView, str]] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayEventRequest(_message.Message):
    __slots__ = ("project_id", "event_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., event_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class ReplayEventResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[_delivery_service_pb2.Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[_delivery_service_pb2.Delivery, _Mapping]]] = ...) -> None: ...

class RecoverDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id", "start_time")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecoverDestinationResponse(_message.Message):
    __slots__ = ("deliveries_recovered",)
    DELIVERIES_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    deliveries_recovered: int
    def __init__(self, deliveries_recovered: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("project_id", "source_ids", "destination_ids", "event_types", "kinds", "after_cursor", "start_time", "from_now", "include_payload")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_IDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source_ids: _containers.RepeatedScalarFieldContainer[str]
    destination_ids: _containers.RepeatedScalarFieldContainer[str]
    event_types: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[ActivityKind]
    after_cursor: str
    start_time: _timestamp_pb2.Timestamp
    from_now: bool
    include_payload: bool
    def __init__(self, project_id: _Optional[str] = ..., source_ids: _Optional[_Iterable[str]] = ..., destination_ids: _Optional[_Iterable[str]] = ..., event_types: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[_Union[ActivityKind, str]]] = ..., after_cursor: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_now: _Optional[bool] = ..., include_payload: _Optional[bool] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("cursor", "time", "event_received", "attempt_finished", "delivery_succeeded", "delivery_failed", "destination_state_changed", "resource_changed", "heartbeat")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FINISHED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FAILED_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    time: _timestamp_pb2.Timestamp
    event_received: EventReceived
    attempt_finished: AttemptFinished
    delivery_succeeded: DeliverySucceeded
    delivery_failed: DeliveryFailed
    destination_state_changed: DestinationStateChanged
    resource_changed: ResourceChanged
    heartbeat: Heartbeat
    def __init__(self, cursor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_received: _Optional[_Union[EventReceived, _Mapping]] = ..., attempt_finished: _Optional[_Union[AttemptFinished, _Mapping]] = ..., delivery_succeeded: _Optional[_Union[DeliverySucceeded, _Mapping]] = ..., delivery_failed: _Optional[_Union[DeliveryFailed, _Mapping]] = ..., destination_state_changed: _Optional[_Union[DestinationStateChanged, _Mapping]] = ..., resource_changed: _Optional[_Union[ResourceChanged, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class EventReceived(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class AttemptFinished(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: _delivery_service_pb2.Attempt
    def __init__(self, attempt: _Optional[_Union[_delivery_service_pb2.Attempt, _Mapping]] = ...) -> None: ...

class DeliverySucceeded(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: _delivery_service_pb2.Delivery
    def __init__(self, delivery: _Optional[_Union[_delivery_service_pb2.Delivery, _Mapping]] = ...) -> None: ...

class DeliveryFailed(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: _delivery_service_pb2.Delivery
    def __init__(self, delivery: _Optional[_Union[_delivery_service_pb2.Delivery, _Mapping]] = ...) -> None: ...

class DestinationStateChanged(_message.Message):
    __slots__ = ("destination_id", "state", "circuit", "reason")
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    destination_id: str
    state: _destination_service_pb2.DestinationState
    circuit: _destination_service_pb2.CircuitState
    reason: str
    def __init__(self, destination_id: _Optional[str] = ..., state: _Optional[_Union[_destination_service_pb2.DestinationState, str]] = ..., circuit: _Optional[_Union[_destination_service_pb2.CircuitState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ResourceChanged(_message.Message):
    __slots__ = ("resource_type", "resource_id", "action", "actor_key_id", "changed_fields")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    resource_type: str
    resource_id: str
    action: ChangeAction
    actor_key_id: str
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ..., action: _Optional[_Union[ChangeAction, str]] = ..., actor_key_id: _Optional[str] = ..., changed_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

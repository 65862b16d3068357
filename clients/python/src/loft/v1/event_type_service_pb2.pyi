import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(_message.Message):
    __slots__ = ("name", "project_id", "description", "schema", "deprecated", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    project_id: str
    description: str
    schema: _struct_pb2.Struct
    deprecated: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., project_id: _Optional[str] = ..., description: _Optional[str] = ..., schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., deprecated: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEventTypeRequest(_message.Message):
    __slots__ = ("project_id", "event_type")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_type: EventType
    def __init__(self, project_id: _Optional[str] = ..., event_type: _Optional[_Union[EventType, _Mapping]] = ...) -> None: ...

class CreateEventTypeResponse(_message.Message):
    __slots__ = ("event_type",)
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    event_type: EventType
    def __init__(self, event_type: _Optional[_Union[EventType, _Mapping]] = ...) -> None: ...

class GetEventTypeRequest(_message.Message):
    __slots__ = ("project_id", "event_type_name")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_type_name: str
    def __init__(self, project_id: _Optional[str] = ..., event_type_name: _Optional[str] = ...) -> None: ...

class GetEventTypeResponse(_message.Message):
    __slots__ = ("event_type",)
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    event_type: EventType
    def __init__(self, event_type: _Optional[_Union[EventType, _Mapping]] = ...) -> None: ...

class ListEventTypesRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventTypesResponse(_message.Message):
    __slots__ = ("event_types", "next_page_token")
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedCompositeFieldContainer[EventType]
    next_page_token: str
    def __init__(self, event_types: _Optional[_Iterable[_Union[EventType, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateEventTypeRequest(_message.Message):
    __slots__ = ("project_id", "event_type", "update_mask")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_type: EventType
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, project_id: _Optional[str] = ..., event_type: _Optional[_Union[EventType, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateEventTypeResponse(_message.Message):
    __slots__ = ("event_type",)
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    event_type: EventType
    def __init__(self, event_type: _Optional[_Union[EventType, _Mapping]] = ...) -> None: ...

class DeleteEventTypeRequest(_message.Message):
    __slots__ = ("project_id", "event_type_name")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    event_type_name: str
    def __init__(self, project_id: _Optional[str] = ..., event_type_name: _Optional[str] = ...) -> None: ...

class DeleteEventTypeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

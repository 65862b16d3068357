import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignatureScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_SCHEME_UNSPECIFIED: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_STANDARD_WEBHOOKS: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_GITHUB: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_STRIPE: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_SHOPIFY: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_HMAC_SHA256_HEX: _ClassVar[SignatureScheme]
    SIGNATURE_SCHEME_HMAC_SHA256_BASE64: _ClassVar[SignatureScheme]
SIGNATURE_SCHEME_UNSPECIFIED: SignatureScheme
SIGNATURE_SCHEME_STANDARD_WEBHOOKS: SignatureScheme
SIGNATURE_SCHEME_GITHUB: SignatureScheme
SIGNATURE_SCHEME_STRIPE: SignatureScheme
SIGNATURE_SCHEME_SHOPIFY: SignatureScheme
SIGNATURE_SCHEME_HMAC_SHA256_HEX: SignatureScheme
SIGNATURE_SCHEME_HMAC_SHA256_BASE64: SignatureScheme

class Source(_message.Message):
    __slots__ = ("id", "project_id", "name", "description", "ingest_url", "auth", "event_type_from", "dedup", "rate_limit", "max_body_bytes", "allowed_methods", "json_schema", "response", "paused", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INGEST_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FROM_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_BODY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    description: str
    ingest_url: str
    auth: SourceAuth
    event_type_from: EventTypeFrom
    dedup: SourceDedup
    rate_limit: _common_pb2.RateLimit
    max_body_bytes: int
    allowed_methods: _containers.RepeatedScalarFieldContainer[str]
    json_schema: _struct_pb2.Struct
    response: SourceResponse
    paused: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., ingest_url: _Optional[str] = ..., auth: _Optional[_Union[SourceAuth, _Mapping]] = ..., event_type_from: _Optional[_Union[EventTypeFrom, _Mapping]] = ..., dedup: _Optional[_Union[SourceDedup, _Mapping]] = ..., rate_limit: _Optional[_Union[_common_pb2.RateLimit, _Mapping]] = ..., max_body_bytes: _Optional[int] = ..., allowed_methods: _Optional[_Iterable[str]] = ..., json_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., response: _Optional[_Union[SourceResponse, _Mapping]] = ..., paused: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SourceAuth(_message.Message):
    __slots__ = ("none", "basic", "api_key", "signature")
    NONE_FIELD_NUMBER: _ClassVar[int]
    BASIC_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    none: _common_pb2.NoAuth
    basic: _common_pb2.BasicAuth
    api_key: ApiKeyAuth
    signature: SignatureAuth
    def __init__(self, none: _Optional[_Union[_common_pb2.NoAuth, _Mapping]] = ..., basic: _Optional[_Union[_common_pb2.BasicAuth, _Mapping]] = ..., api_key: _Optional[_Union[ApiKeyAuth, _Mapping]] = ..., signature: _Optional[_Union[SignatureAuth, _Mapping]] = ...) -> None: ...

class ApiKeyAuth(_message.Message):
    __slots__ = ("header", "key", "key_hint")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    header: str
    key: str
    key_hint: str
    def __init__(self, header: _Optional[str] = ..., key: _Optional[str] = ..., key_hint: _Optional[str] = ...) -> None: ...

class SignatureAuth(_message.Message):
    __slots__ = ("scheme", "secret", "secret_hint", "header", "tolerance")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    scheme: SignatureScheme
    secret: str
    secret_hint: str
    header: str
    tolerance: _duration_pb2.Duration
    def __init__(self, scheme: _Optional[_Union[SignatureScheme, str]] = ..., secret: _Optional[str] = ..., secret_hint: _Optional[str] = ..., header: _Optional[str] = ..., tolerance: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EventTypeFrom(_message.Message):
    __slots__ = ("static_type", "header", "json_pointer")
    STATIC_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JSON_POINTER_FIELD_NUMBER: _ClassVar[int]
    static_type: str
    header: str
    json_pointer: str
    def __init__(self, static_type: _Optional[str] = ..., header: _Optional[str] = ..., json_pointer: _Optional[str] = ...) -> None: ...

class SourceDedup(_message.Message):
    __slots__ = ("header", "json_pointer", "window")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JSON_POINTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    header: str
    json_pointer: str
    window: _duration_pb2.Duration
    def __init__(self, header: _Optional[str] = ..., json_pointer: _Optional[str] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SourceResponse(_message.Message):
    __slots__ = ("status_code", "content_type", "body")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    content_type: str
    body: str
    def __init__(self, status_code: _Optional[int] = ..., content_type: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class CreateSourceRequest(_message.Message):
    __slots__ = ("project_id", "source")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source: Source
    def __init__(self, project_id: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ...) -> None: ...

class CreateSourceResponse(_message.Message):
    __slots__ = ("source", "secret")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    source: Source
    secret: str
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetSourceRequest(_message.Message):
    __slots__ = ("project_id", "source_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source_id: str
    def __init__(self, project_id: _Optional[str] = ..., source_id: _Optional[str] = ...) -> None: ...

class GetSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: Source
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources", "next_page_token")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    next_page_token: str
    def __init__(self, sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSourceRequest(_message.Message):
    __slots__ = ("project_id", "source", "update_mask")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source: Source
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, project_id: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: Source
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ...) -> None: ...

class DeleteSourceRequest(_message.Message):
    __slots__ = ("project_id", "source_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source_id: str
    def __init__(self, project_id: _Optional[str] = ..., source_id: _Optional[str] = ...) -> None: ...

class DeleteSourceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSourceSecretRequest(_message.Message):
    __slots__ = ("project_id", "source_id", "secret")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    source_id: str
    secret: str
    def __init__(self, project_id: _Optional[str] = ..., source_id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class RotateSourceSecretResponse(_message.Message):
    __slots__ = ("source", "secret")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    source: Source
    secret: str
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

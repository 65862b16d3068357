import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loft.v1 import common_pb2 as _common_pb2
from loft.v1 import delivery_service_pb2 as _delivery_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DestinationSignatureScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESTINATION_SIGNATURE_SCHEME_UNSPECIFIED: _ClassVar[DestinationSignatureScheme]
    DESTINATION_SIGNATURE_SCHEME_HMAC_SHA256: _ClassVar[DestinationSignatureScheme]
    DESTINATION_SIGNATURE_SCHEME_ED25519: _ClassVar[DestinationSignatureScheme]

class DestinationOrdering(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESTINATION_ORDERING_UNSPECIFIED: _ClassVar[DestinationOrdering]
    DESTINATION_ORDERING_UNORDERED: _ClassVar[DestinationOrdering]
    DESTINATION_ORDERING_ORDERED: _ClassVar[DestinationOrdering]

class DestinationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESTINATION_STATE_UNSPECIFIED: _ClassVar[DestinationState]
    DESTINATION_STATE_ACTIVE: _ClassVar[DestinationState]
    DESTINATION_STATE_PAUSED: _ClassVar[DestinationState]
    DESTINATION_STATE_DISABLED: _ClassVar[DestinationState]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]
DESTINATION_SIGNATURE_SCHEME_UNSPECIFIED: DestinationSignatureScheme
DESTINATION_SIGNATURE_SCHEME_HMAC_SHA256: DestinationSignatureScheme
DESTINATION_SIGNATURE_SCHEME_ED25519: DestinationSignatureScheme
DESTINATION_ORDERING_UNSPECIFIED: DestinationOrdering
DESTINATION_ORDERING_UNORDERED: DestinationOrdering
DESTINATION_ORDERING_ORDERED: DestinationOrdering
DESTINATION_STATE_UNSPECIFIED: DestinationState
DESTINATION_STATE_ACTIVE: DestinationState
DESTINATION_STATE_PAUSED: DestinationState
DESTINATION_STATE_DISABLED: DestinationState
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState

class Destination(_message.Message):
    __slots__ = ("id", "project_id", "name", "description", "url", "http_method", "headers", "auth", "secret", "secret_hint", "public_key", "signature_scheme", "legacy_signature", "timeout", "rate_limit", "max_in_flight", "retry_policy", "ordering", "state", "disabled_reason", "consecutive_failures", "last_success_time", "last_failure_time", "circuit", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_SCHEME_FIELD_NUMBER: _ClassVar[int]
    LEGACY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_REASON_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_TIME_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    description: str
    url: str
    http_method: str
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    auth: DestinationAuth
    secret: str
    secret_hint: str
    public_key: str
    signature_scheme: DestinationSignatureScheme
    legacy_signature: bool
    timeout: _duration_pb2.Duration
    rate_limit: _common_pb2.RateLimit
    max_in_flight: int
    retry_policy: _common_pb2.RetryPolicy
    ordering: DestinationOrdering
    state: DestinationState
    disabled_reason: str
    consecutive_failures: int
    last_success_time: _timestamp_pb2.Timestamp
    last_failure_time: _timestamp_pb2.Timestamp
    circuit: CircuitState
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., url: _Optional[str] = ..., http_method: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., auth: _Optional[_Union[DestinationAuth, _Mapping]] = ..., secret: _Optional[str] = ..., secret_hint: _Optional[str] = ..., public_key: _Optional[str] = ..., signature_scheme: _Optional[_Union[DestinationSignatureScheme, str]] = ..., legacy_signature: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., rate_limit: _Optional[_Union[_common_pb2.RateLimit, _Mapping]] = ..., max_in_flight: _Optional[int] = ..., retry_policy: _Optional[_Union[_common_pb2.RetryPolicy, _Mapping]] = ..., ordering: _Optional[_Union[DestinationOrdering, str]] = ..., state: _Optional[_Union[DestinationState, str]] = ..., disabled_reason: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., last_success_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_failure_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., circuit: _Optional[_Union[CircuitState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DestinationAuth(_message.Message):
    __slots__ = ("none", "bearer", "basic", "header")
    NONE_FIELD_NUMBER: _ClassVar[int]
    BEARER_FIELD_NUMBER: _ClassVar[int]
    BASIC_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    none: _common_pb2.NoAuth
    bearer: BearerAuth
    basic: _common_pb2.BasicAuth
    header: HeaderAuth
    def __init__(self, none: _Optional[_Union[_common_pb2.NoAuth, _Mapping]] = ..., bearer: _Optional[_Union[BearerAuth, _Mapping]] = ..., basic: _Optional[_Union[_common_pb2.BasicAuth, _Mapping]] = ..., header: _Optional[_Union[HeaderAuth, _Mapping]] = ...) -> None: ...

class BearerAuth(_message.Message):
    __slots__ = ("token", "token_hint")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HINT_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_hint: str
    def __init__(self, token: _Optional[str] = ..., token_hint: _Optional[str] = ...) -> None: ...

class HeaderAuth(_message.Message):
    __slots__ = ("name", "value", "value_hint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_HINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    value_hint: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., value_hint: _Optional[str] = ...) -> None: ...

class PreviousSecret(_message.Message):
    __slots__ = ("secret", "expire_time")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    secret: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, secret: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination: Destination
    def __init__(self, project_id: _Optional[str] = ..., destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class CreateDestinationResponse(_message.Message):
    __slots__ = ("destination", "secret")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    secret: str
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class GetDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class ListDestinationsRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token", "state")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    state: DestinationState
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[DestinationState, str]] = ...) -> None: ...

class ListDestinationsResponse(_message.Message):
    __slots__ = ("destinations", "next_page_token")
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    destinations: _containers.RepeatedCompositeFieldContainer[Destination]
    next_page_token: str
    def __init__(self, destinations: _Optional[_Iterable[_Union[Destination, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination", "update_mask")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination: Destination
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, project_id: _Optional[str] = ..., destination: _Optional[_Union[Destination, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class DeleteDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class DeleteDestinationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class PauseDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class ResumeDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class ResumeDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class RotateDestinationSecretRequest(_message.Message):
    __slots__ = ("project_id", "destination_id", "secret", "grace_period")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    secret: str
    grace_period: _duration_pb2.Duration
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., secret: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RotateDestinationSecretResponse(_message.Message):
    __slots__ = ("destination", "secret")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    secret: str
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetDestinationSecretRequest(_message.Message):
    __slots__ = ("project_id", "destination_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ...) -> None: ...

class GetDestinationSecretResponse(_message.Message):
    __slots__ = ("secret", "previous_secrets", "public_key")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRETS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    secret: str
    previous_secrets: _containers.RepeatedCompositeFieldContainer[PreviousSecret]
    public_key: str
    def __init__(self, secret: _Optional[str] = ..., previous_secrets: _Optional[_Iterable[_Union[PreviousSecret, _Mapping]]] = ..., public_key: _Optional[str] = ...) -> None: ...

class TestDestinationRequest(_message.Message):
    __slots__ = ("project_id", "destination_id", "event_type")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    destination_id: str
    event_type: str
    def __init__(self, project_id: _Optional[str] = ..., destination_id: _Optional[str] = ..., event_type: _Optional[str] = ...) -> None: ...

class TestDestinationResponse(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: _delivery_service_pb2.Attempt
    def __init__(self, attempt: _Optional[_Union[_delivery_service_pb2.Attempt, _Mapping]] = ...) -> None: ...

"""Connect to Loft's gRPC API: one channel serving every ``loft.v1`` service.

>>> from loft import Client
>>> from loft.v1 import project_service_pb2 as projects
>>> with Client("127.0.0.1:7400", api_key="loft_…", tls=False) as client:
...     client.projects.ListProjects(projects.ListProjectsRequest())

:class:`Client` is synchronous (``grpc``); :class:`AsyncClient` is the same
over ``grpc.aio``. Each service stub is an attribute: ``projects``,
``api_keys``, ``sources``, ``destinations``, ``subscriptions``,
``event_types``, ``templates``, ``events``, ``deliveries``.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union, cast, overload

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from loft.v1 import (
    api_key_service_pb2_grpc,
    delivery_service_pb2_grpc,
    destination_service_pb2_grpc,
    error_reason_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    event_type_service_pb2_grpc,
    project_service_pb2_grpc,
    source_service_pb2_grpc,
    subscription_service_pb2_grpc,
    template_service_pb2_grpc,
)

if TYPE_CHECKING:
    from loft.v1.api_key_service_pb2_grpc import ApiKeyServiceAsyncStub
    from loft.v1.delivery_service_pb2_grpc import DeliveryServiceAsyncStub
    from loft.v1.destination_service_pb2_grpc import DestinationServiceAsyncStub
    from loft.v1.event_service_pb2_grpc import EventServiceAsyncStub
    from loft.v1.event_type_service_pb2_grpc import EventTypeServiceAsyncStub
    from loft.v1.project_service_pb2_grpc import ProjectServiceAsyncStub
    from loft.v1.source_service_pb2_grpc import SourceServiceAsyncStub
    from loft.v1.subscription_service_pb2_grpc import SubscriptionServiceAsyncStub
    from loft.v1.template_service_pb2_grpc import TemplateServiceAsyncStub

__all__ = [
    "ERROR_DOMAIN",
    "AsyncClient",
    "Client",
    "error_info",
    "error_reason",
    "paginate",
    "paginate_async",
    "watch",
    "watch_async",
]

#: The ``domain`` of the ``google.rpc.ErrorInfo`` Loft attaches to every error.
ERROR_DOMAIN = "loft.v1"

ErrorReason = error_reason_pb2.ErrorReason
WatchEventsRequest = event_service_pb2.WatchEventsRequest
WatchEventsResponse = event_service_pb2.WatchEventsResponse
Credentials = Union[bool, grpc.ChannelCredentials]

# Room for events at the server's largest body limit (gRPC's default is 4 MiB).
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.primary_user_agent", "loft-python"),
]


def _channel_credentials(tls: Credentials) -> Optional[grpc.ChannelCredentials]:
    if tls is True:
        return grpc.ssl_channel_credentials()
    if tls is False:
        return None
    return tls


class _CallDetails(
    # grpc.ClientCallDetails has no constructor of its own; a namedtuple gives it one.
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _Auth(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <key>`` to every call of a channel."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            d.method,
            d.timeout,
            [*(d.metadata or ()), ("authorization", f"Bearer {self._api_key}")],
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)


class _AsyncAuth:
    """:class:`_Auth` for ``grpc.aio`` channels, one interceptor per kind of
    call: ``grpc.aio`` files an interceptor under the first kind it implements
    only, so one class implementing all four would never see a stream."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(d.metadata or ()))
        metadata.add("authorization", f"Bearer {self._api_key}")
        return grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)


class _AsyncAuthUnaryUnary(_AsyncAuth, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _AsyncAuthUnaryStream(_AsyncAuth, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _AsyncAuthStreamUnary(_AsyncAuth, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


class _AsyncAuthStreamStream(_AsyncAuth, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def _async_auth(api_key: str) -> list[grpc.aio.ClientInterceptor]:
    kinds = (_AsyncAuthUnaryUnary, _AsyncAuthUnaryStream, _AsyncAuthStreamUnary, _AsyncAuthStreamStream)
    return [kind(api_key) for kind in kinds]


class Client:
    """Every Loft service over one ``grpc`` channel.

    :param target: the server's gRPC address, ``host:port`` (``loft serve``
        listens on ``127.0.0.1:7400`` by default).
    :param api_key: sent as ``authorization: Bearer <key>`` on every call.
    :param tls: ``True`` (the default) for TLS with the system's roots,
        ``False`` for plaintext (as ``loft serve`` listens by default; the key
        then travels in clear), or your own ``grpc.ChannelCredentials``.
    :param options: more gRPC channel options, e.g.
        ``[("grpc.keepalive_time_ms", 30000)]``.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: str,
        api_key: Optional[str] = None,
        *,
        tls: Credentials = True,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        creds = _channel_credentials(tls)
        opts = [*_CHANNEL_OPTIONS, *options]
        self._channel = grpc.secure_channel(target, creds, opts) if creds else grpc.insecure_channel(target, opts)
        channel: grpc.Channel = self._channel
        if api_key:
            channel = grpc.intercept_channel(channel, _Auth(api_key))
        self.channel = channel
        self.projects = project_service_pb2_grpc.ProjectServiceStub(channel)
        self.api_keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        self.sources = source_service_pb2_grpc.SourceServiceStub(channel)
        self.destinations = destination_service_pb2_grpc.DestinationServiceStub(channel)
        self.subscriptions = subscription_service_pb2_grpc.SubscriptionServiceStub(channel)
        self.event_types = event_type_service_pb2_grpc.EventTypeServiceStub(channel)
        self.templates = template_service_pb2_grpc.TemplateServiceStub(channel)
        self.events = event_service_pb2_grpc.EventServiceStub(channel)
        self.deliveries = delivery_service_pb2_grpc.DeliveryServiceStub(channel)

    def watch(self, request: Optional[WatchEventsRequest] = None, **kwargs: Any) -> Generator[WatchEventsResponse, None, None]:
        """:func:`watch` on this client's ``events`` service."""
        return watch(self.events, request, **kwargs)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` over ``grpc.aio``: every stub method returns an
    awaitable (unary) or an async iterator (``WatchEvents``). Create it inside
    the event loop that uses it; ``async with`` closes it.
    """

    projects: ProjectServiceAsyncStub
    api_keys: ApiKeyServiceAsyncStub
    sources: SourceServiceAsyncStub
    destinations: DestinationServiceAsyncStub
    subscriptions: SubscriptionServiceAsyncStub
    event_types: EventTypeServiceAsyncStub
    templates: TemplateServiceAsyncStub
    events: EventServiceAsyncStub
    deliveries: DeliveryServiceAsyncStub

    def __init__(
        self,
        target: str,
        api_key: Optional[str] = None,
        *,
        tls: Credentials = True,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        creds = _channel_credentials(tls)
        opts = [*_CHANNEL_OPTIONS, *options]
        interceptors = _async_auth(api_key) if api_key else None
        if creds:
            self.channel = grpc.aio.secure_channel(target, creds, opts, interceptors=interceptors)
        else:
            self.channel = grpc.aio.insecure_channel(target, opts, interceptors=interceptors)
        channel = self.channel
        self.projects = project_service_pb2_grpc.ProjectServiceStub(channel)
        self.api_keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        self.sources = source_service_pb2_grpc.SourceServiceStub(channel)
        self.destinations = destination_service_pb2_grpc.DestinationServiceStub(channel)
        self.subscriptions = subscription_service_pb2_grpc.SubscriptionServiceStub(channel)
        self.event_types = event_type_service_pb2_grpc.EventTypeServiceStub(channel)
        self.templates = template_service_pb2_grpc.TemplateServiceStub(channel)
        self.events = event_service_pb2_grpc.EventServiceStub(channel)
        self.deliveries = delivery_service_pb2_grpc.DeliveryServiceStub(channel)

    def watch(self, request: Optional[WatchEventsRequest] = None, **kwargs: Any) -> AsyncGenerator[WatchEventsResponse, None]:
        """:func:`watch_async` on this client's ``events`` service."""
        return watch_async(self.events, request, **kwargs)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- errors ------------------------------------------------------------------------------------


def error_info(exc: BaseException) -> Optional[error_details_pb2.ErrorInfo]:
    """The ``google.rpc.ErrorInfo`` of Loft's domain carried by a failed call
    (``grpc.RpcError`` or ``grpc.aio.AioRpcError``), or ``None``."""
    trailing = getattr(exc, "trailing_metadata", None)
    if not callable(trailing):
        return None
    for key, value in trailing() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    return info
    return None


def error_reason(exc: BaseException) -> ErrorReason:
    """Why a call failed, as an :class:`loft.v1.error_reason_pb2.ErrorReason`
    value: the wire reason ``"DESTINATION_URL_FORBIDDEN"`` is
    ``ErrorReason.ERROR_REASON_DESTINATION_URL_FORBIDDEN``.
    ``ERROR_REASON_UNSPECIFIED`` (0) for anything without Loft's ErrorInfo
    and for reasons newer than this client.
    """
    info = error_info(exc)
    if info is None:
        return ErrorReason.ERROR_REASON_UNSPECIFIED
    try:
        return cast(ErrorReason, ErrorReason.Value("ERROR_REASON_" + info.reason))
    except ValueError:
        return ErrorReason.ERROR_REASON_UNSPECIFIED


# --- pagination --------------------------------------------------------------------------------

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Item = TypeVar("Item")


def _items_of(response: Message) -> Iterable[Any]:
    repeated = [f for f in response.DESCRIPTOR.fields if f.is_repeated]
    if len(repeated) != 1:
        raise TypeError(f"{response.DESCRIPTOR.full_name} is not a List response; pass items=")
    return cast(Iterable[Any], getattr(response, repeated[0].name))


def _first_page(request: Req) -> Req:
    if "page_token" not in request.DESCRIPTOR.fields_by_name:
        raise TypeError(f"{request.DESCRIPTOR.full_name} has no page_token")
    copy = type(request)()
    copy.CopyFrom(request)
    return copy


@overload
def paginate(method: Callable[..., Resp], request: Req, items: Callable[[Resp], Iterable[Item]], **kwargs: Any) -> Iterator[Item]: ...
@overload
def paginate(method: Callable[..., Resp], request: Req, items: None = None, **kwargs: Any) -> Iterator[Any]: ...
def paginate(method: Callable[..., Any], request: Message, items: Optional[Callable[[Any], Iterable[Any]]] = None, **kwargs: Any) -> Iterator[Any]:
    """Yields every item of a List RPC, calling it once per page until
    ``next_page_token`` comes back empty::

        for d in paginate(client.destinations.ListDestinations, ListDestinationsRequest(page_size=100)):
            print(d.id)

    ``items`` picks the items out of a response (by default, its one repeated
    field); ``kwargs`` (``timeout=``, ``metadata=``…) go to every call. The
    request is not modified.
    """
    request = _first_page(request)
    while True:
        response = method(request, **kwargs)
        yield from (items or _items_of)(response)
        if not response.next_page_token:
            return
        if response.next_page_token == request.page_token:  # type: ignore[attr-defined]
            raise RuntimeError(f"{request.DESCRIPTOR.full_name}: the server returned the same page token")
        request.page_token = response.next_page_token  # type: ignore[attr-defined]


@overload
def paginate_async(method: Callable[..., Awaitable[Resp]], request: Req, items: Callable[[Resp], Iterable[Item]], **kwargs: Any) -> AsyncIterator[Item]: ...
@overload
def paginate_async(method: Callable[..., Awaitable[Resp]], request: Req, items: None = None, **kwargs: Any) -> AsyncIterator[Any]: ...
async def paginate_async(method: Callable[..., Awaitable[Any]], request: Message, items: Optional[Callable[[Any], Iterable[Any]]] = None, **kwargs: Any) -> AsyncIterator[Any]:
    """:func:`paginate` for :class:`AsyncClient` stubs (``async for``)."""
    request = _first_page(request)
    while True:
        response = await method(request, **kwargs)
        for item in (items or _items_of)(response):
            yield item
        if not response.next_page_token:
            return
        if response.next_page_token == request.page_token:  # type: ignore[attr-defined]
            raise RuntimeError(f"{request.DESCRIPTOR.full_name}: the server returned the same page token")
        request.page_token = response.next_page_token  # type: ignore[attr-defined]


# --- the live feed -----------------------------------------------------------------------------

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}

OnRetry = Callable[[Optional[grpc.RpcError], float], None]


def _backoff(initial: float, maximum: float, failures: int) -> float:
    delay = min(initial * 2.0**failures, maximum)
    return delay * random.uniform(0.8, 1.2)


def _resume(request: WatchEventsRequest, cursor: str) -> None:
    if cursor:
        request.after_cursor = cursor  # also clears start_time / from_now (one oneof)


def watch(
    events: event_service_pb2_grpc.EventServiceStub,
    request: Optional[WatchEventsRequest] = None,
    *,
    backoff: tuple[float, float] = (0.25, 30.0),
    on_retry: Optional[OnRetry] = None,
    **kwargs: Any,
) -> Generator[WatchEventsResponse, None, None]:
    """Follows ``WatchEvents`` and yields every item of the feed, heartbeats
    included (they carry a fresh cursor).

    When the stream breaks for a reason worth retrying (``UNAVAILABLE`` and
    other transient codes, or the server ending the stream) it reconnects
    after a backoff and resumes after the last cursor it yielded: no gap and
    no duplicate across reconnections. Other errors (``INVALID_ARGUMENT``
    with reason ``INVALID_CURSOR``, ``OUT_OF_RANGE`` with reason
    ``CURSOR_EXPIRED``, ``PERMISSION_DENIED``…) are raised.

    :param request: filters and where to start (``after_cursor``,
        ``start_time``, or from now; a reconnection before the first item
        starts over from it); not modified. To resume across restarts of your
        program, store the last item's ``cursor`` and pass it as
        ``after_cursor``.
    :param backoff: the first delay before reconnecting and the most it
        doubles up to, in seconds (±20 % jitter; reset once a stream delivers
        more than the heartbeat it opens with).
    :param on_retry: called with the error (``None`` when the server ended
        the stream) and the delay before each reconnection.
    """
    req = WatchEventsRequest()
    if request is not None:
        req.CopyFrom(request)
    failures = 0
    while True:
        call = events.WatchEvents(req, **kwargs)
        error: Optional[grpc.RpcError] = None
        received = 0
        try:
            for item in call:
                received += 1
                if received > 1:  # every stream opens with a heartbeat; what follows shows it works
                    failures = 0
                _resume(req, item.cursor)
                yield item
        except grpc.RpcError as e:
            if e.code() not in _RETRYABLE:  # type: ignore[attr-defined, unused-ignore]
                raise
            error = e
        finally:
            call.cancel()
        delay = _backoff(backoff[0], backoff[1], failures)
        failures += 1
        if on_retry is not None:
            on_retry(error, delay)
        time.sleep(delay)


async def watch_async(
    events: EventServiceAsyncStub,
    request: Optional[WatchEventsRequest] = None,
    *,
    backoff: tuple[float, float] = (0.25, 30.0),
    on_retry: Optional[OnRetry] = None,
    **kwargs: Any,
) -> AsyncGenerator[WatchEventsResponse, None]:
    """:func:`watch` for :class:`AsyncClient` (``async for``). Breaking out
    of the loop leaves the stream open until the generator is closed: wrap it
    in ``contextlib.aclosing`` to end the call at once."""
    req = WatchEventsRequest()
    if request is not None:
        req.CopyFrom(request)
    failures = 0
    while True:
        call = events.WatchEvents(req, **kwargs)
        error: Optional[grpc.RpcError] = None
        received = 0
        try:
            async for item in call:
                received += 1
                if received > 1:  # every stream opens with a heartbeat; what follows shows it works
                    failures = 0
                _resume(req, item.cursor)
                yield item
        except grpc.aio.AioRpcError as e:
            if e.code() not in _RETRYABLE:
                raise
            error = e
        finally:
            call.cancel()
        delay = _backoff(backoff[0], backoff[1], failures)
        failures += 1
        if on_retry is not None:
            on_retry(error, delay)
        await asyncio.sleep(delay)

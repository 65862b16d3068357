# Unit tests of the hand-written client layer against fake services on a real
# gRPC server (127.0.0.1, a free port). test_integration.py runs against a real
# `loft serve`.
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any, Optional

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

import loft
from loft.v1 import (
    destination_service_pb2 as dst,
    destination_service_pb2_grpc as dst_grpc,
    error_reason_pb2,
    event_service_pb2 as ev,
    event_service_pb2_grpc as ev_grpc,
)

ErrorReason = error_reason_pb2.ErrorReason


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str) -> None:
    """Fails the call the way Loft does: ErrorInfo (and BadRequest) details."""
    status = status_pb2.Status(code=code.value[0], message=reason.lower())
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="loft.v1"))
    status.details.add().Pack(error_details_pb2.BadRequest())
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(code, status.message)


# The generated servicers answer UNIMPLEMENTED for what a subclass leaves out; their
# stubs declare every method abstract, hence the `type: ignore[abstract]` below.
class Destinations(dst_grpc.DestinationServiceServicer):
    """ListDestinations over a fixed list, two per page; records auth headers."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.auth: list[Optional[str]] = []

    def ListDestinations(self, request: dst.ListDestinationsRequest, context: grpc.ServicerContext) -> dst.ListDestinationsResponse:
        self.auth.append(dict(context.invocation_metadata()).get("authorization"))  # type: ignore[arg-type]
        start = 0
        if request.page_token:
            if not request.page_token.startswith("page-"):
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
            start = int(request.page_token[5:])
        end = min(start + 2, len(self.ids))
        return dst.ListDestinationsResponse(
            destinations=[dst.Destination(id=i) for i in self.ids[start:end]],
            next_page_token=f"page-{end}" if end < len(self.ids) else "",
        )


class Feed(ev_grpc.EventServiceServicer):
    """WatchEvents from a script: per call, cursors to send then how to end
    (None: end the stream; a (code, reason) pair: fail). Calls past the script
    stay open until the client leaves."""

    def __init__(self, script: list[tuple[list[str], Optional[tuple[grpc.StatusCode, str]]]]) -> None:
        self.script = script
        self.requests: list[ev.WatchEventsRequest] = []
        self.auth: list[Optional[str]] = []

    def WatchEvents(self, request: ev.WatchEventsRequest, context: grpc.ServicerContext) -> Iterator[ev.WatchEventsResponse]:
        n = len(self.requests)
        self.requests.append(request)
        self.auth.append(dict(context.invocation_metadata()).get("authorization"))  # type: ignore[arg-type]
        if n >= len(self.script):
            done = threading.Event()
            context.add_callback(done.set)
            done.wait(10)
            return
        cursors, end = self.script[n]
        for c in cursors:
            yield ev.WatchEventsResponse(cursor=c, heartbeat=ev.Heartbeat())
        if end is not None:
            abort(context, end[0], end[1])

    def start_cursors(self) -> list[str]:
        return [r.after_cursor for r in self.requests]


@pytest.fixture
def server() -> Iterator[tuple[grpc.Server, str]]:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    port = srv.add_insecure_port("127.0.0.1:0")
    yield srv, f"127.0.0.1:{port}"
    srv.stop(grace=None)


def test_client_stubs_paginate_and_api_key(server: tuple[grpc.Server, str]) -> None:
    srv, addr = server
    fake = Destinations(["dst_1", "dst_2", "dst_3", "dst_4", "dst_5"])  # type: ignore[abstract]
    dst_grpc.add_DestinationServiceServicer_to_server(fake, srv)
    srv.start()
    with loft.Client(addr, api_key="loft_test", tls=False) as client:
        for name in ("projects", "api_keys", "sources", "destinations", "subscriptions", "event_types", "templates", "events", "deliveries"):
            assert getattr(client, name) is not None
        request = dst.ListDestinationsRequest(page_size=2)
        ids = [d.id for d in loft.paginate(client.destinations.ListDestinations, request)]
        assert ids == fake.ids
        assert request.page_token == ""
        assert fake.auth == ["Bearer loft_test"] * 3

        # items= picks the items explicitly; stopping early makes no more calls.
        first = next(loft.paginate(client.destinations.ListDestinations, request, lambda r: r.destinations))
        assert first.id == "dst_1" and len(fake.auth) == 4

        with pytest.raises(grpc.RpcError) as exc:
            list(loft.paginate(client.destinations.ListDestinations, dst.ListDestinationsRequest(page_token="garbage")))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN
        info = loft.error_info(exc.value)
        assert info is not None and info.domain == "loft.v1"

    with pytest.raises(TypeError):
        list(loft.paginate(lambda r: r, dst.GetDestinationRequest()))


def test_error_reason_of_other_errors() -> None:
    assert loft.error_reason(ValueError("x")) == ErrorReason.ERROR_REASON_UNSPECIFIED

    class Foreign(grpc.RpcError):
        def __init__(self, reason: str, domain: str) -> None:
            status = status_pb2.Status(code=code_pb2.INTERNAL)
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
            self._md = (("grpc-status-details-bin", status.SerializeToString()),)

        def trailing_metadata(self) -> Any:
            return self._md

    assert loft.error_reason(Foreign("INTERNAL", "proxy.example")) == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert loft.error_reason(Foreign("SOMETHING_NEWER", "loft.v1")) == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert loft.error_reason(Foreign("CURSOR_EXPIRED", "loft.v1")) == ErrorReason.ERROR_REASON_CURSOR_EXPIRED


RESUME_SCRIPT: list[tuple[list[str], Optional[tuple[grpc.StatusCode, str]]]] = [
    (["c1", "c2"], (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")),
    ([], (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")),  # fails before any item
    (["c3"], None),  # the server ends the stream cleanly
    (["c4", "c5"], (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED")),
]


def test_watch_resumes_after_last_cursor(server: tuple[grpc.Server, str]) -> None:
    srv, addr = server
    feed = Feed(RESUME_SCRIPT)  # type: ignore[abstract]
    ev_grpc.add_EventServiceServicer_to_server(feed, srv)
    srv.start()
    retries: list[Optional[grpc.RpcError]] = []
    got: list[str] = []
    request = ev.WatchEventsRequest(after_cursor="c0")
    with loft.Client(addr, tls=False) as client:
        with pytest.raises(grpc.RpcError) as exc:
            for item in client.watch(request, backoff=(0.001, 0.005), on_retry=lambda e, _: retries.append(e)):
                got.append(item.cursor)
    assert got == ["c1", "c2", "c3", "c4", "c5"]
    assert feed.start_cursors() == ["c0", "c2", "c2", "c3"]
    assert [e.code() if e else None for e in retries] == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, None]
    assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_CURSOR_EXPIRED
    assert request.after_cursor == "c0"


def test_watch_backoff_ignores_the_opening_heartbeat(server: tuple[grpc.Server, str]) -> None:
    """Every stream opens with a heartbeat, so that alone must not reset the
    backoff: a server that accepts streams and fails them at once gets ever
    longer delays; a stream that delivers more starts them over."""
    srv, addr = server
    unavailable = (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    feed = Feed([(["h1"], unavailable), (["h2"], unavailable), (["h3"], unavailable), (["h4", "c5"], unavailable), (["h6"], None)])  # type: ignore[abstract]
    ev_grpc.add_EventServiceServicer_to_server(feed, srv)
    srv.start()
    delays: list[float] = []
    with loft.Client(addr, tls=False) as client:
        for item in client.watch(backoff=(0.001, 1.0), on_retry=lambda _, d: delays.append(d)):
            if item.cursor == "h6":
                break
    # With ±20 % jitter: 1 ms, 2 ms, 4 ms, then 1 ms again after c5.
    assert len(delays) == 4
    assert delays[0] < delays[1] < delays[2] and delays[3] < delays[1]


def test_watch_stops(server: tuple[grpc.Server, str]) -> None:
    srv, addr = server
    feed = Feed([([], (grpc.StatusCode.UNIMPLEMENTED, "INTERNAL")), (["c1", "c2"], None)])  # type: ignore[abstract]
    ev_grpc.add_EventServiceServicer_to_server(feed, srv)
    srv.start()
    with loft.Client(addr, tls=False) as client:
        with pytest.raises(grpc.RpcError) as exc:
            next(client.watch())
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert len(feed.requests) == 1
        # Breaking out cancels the stream.
        for item in client.watch():
            assert item.cursor == "c1"
            break


def test_async_client(server: tuple[grpc.Server, str]) -> None:
    srv, addr = server
    fake = Destinations(["dst_1", "dst_2", "dst_3"])  # type: ignore[abstract]
    feed = Feed(RESUME_SCRIPT)  # type: ignore[abstract]
    dst_grpc.add_DestinationServiceServicer_to_server(fake, srv)
    ev_grpc.add_EventServiceServicer_to_server(feed, srv)
    srv.start()

    async def run() -> None:
        async with loft.AsyncClient(addr, api_key="loft_async", tls=False) as client:
            ids = [d.id async for d in loft.paginate_async(client.destinations.ListDestinations, dst.ListDestinationsRequest())]
            assert ids == fake.ids
            assert fake.auth == ["Bearer loft_async"] * 2

            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await client.destinations.ListDestinations(dst.ListDestinationsRequest(page_token="garbage"))
            assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN

            got: list[str] = []
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                async for item in client.watch(ev.WatchEventsRequest(after_cursor="c0"), backoff=(0.001, 0.005)):
                    got.append(item.cursor)
            assert got == ["c1", "c2", "c3", "c4", "c5"]
            assert feed.start_cursors() == ["c0", "c2", "c2", "c3"]
            assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_CURSOR_EXPIRED
            # grpc.aio files an interceptor under one kind of call only: streams need their own.
            assert feed.auth == ["Bearer loft_async"] * 4

    asyncio.run(run())

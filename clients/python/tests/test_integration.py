# Tests against a real `loft serve` (started by .ci/run), skipped when
# LOFT_TEST_GRPC_ADDR is unset. LOFT_TEST_API_KEY is an ADMIN key; the server
# runs with --dev, so http://127.0.0.1 destinations are allowed.
from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import NoReturn, Optional
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

import loft
from loft import webhooks
from loft.v1 import (
    api_key_service_pb2 as keys,
    delivery_service_pb2 as deliveries,
    destination_service_pb2 as dst,
    error_reason_pb2,
    event_service_pb2 as ev,
    project_service_pb2 as projects,
    subscription_service_pb2 as subs,
)

ADDR = os.environ.get("LOFT_TEST_GRPC_ADDR", "")
pytestmark = pytest.mark.skipif(not ADDR, reason="LOFT_TEST_GRPC_ADDR is not set: no loft serve to test against (.ci/run starts one)")
ErrorReason = error_reason_pb2.ErrorReason


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Setup:
    editor: loft.Client
    editor_key: str
    created: timestamp_pb2.Timestamp
    destination: dst.Destination
    secret: str
    received: queue.Queue[Delivery]


class _Receiver(BaseHTTPRequestHandler):
    received: queue.Queue[Delivery]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.put(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """A project, an EDITOR key for it, a receiver, a destination pointing at
    it and a subscription to `order.*`."""
    received: queue.Queue[Delivery] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"received": received})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    with loft.Client(ADDR, api_key=os.environ["LOFT_TEST_API_KEY"], tls=False) as admin:
        project = admin.projects.CreateProject(projects.CreateProjectRequest(project=projects.Project(name=f"python {request.node.name}"))).project
        key = admin.api_keys.CreateApiKey(
            keys.CreateApiKeyRequest(api_key=keys.ApiKey(project_id=project.id, name="python", role=keys.API_KEY_ROLE_EDITOR))
        )
    assert key.secret.startswith("loft_")
    with loft.Client(ADDR, api_key=key.secret, tls=False) as editor:
        # The EDITOR key defaults to its project: no project_id.
        created = editor.destinations.CreateDestination(
            dst.CreateDestinationRequest(destination=dst.Destination(name="receiver", url=f"http://127.0.0.1:{receiver.server_port}/hook"))
        )
        editor.subscriptions.CreateSubscription(
            subs.CreateSubscriptionRequest(subscription=subs.Subscription(destination_id=created.destination.id, event_types=["order.*"]))
        )
        yield Setup(editor, key.secret, project.create_time, created.destination, created.secret, received)
    receiver.shutdown()


def test_configuration(setup: Setup) -> None:
    client = setup.editor
    client.destinations.CreateDestination(dst.CreateDestinationRequest(destination=dst.Destination(name="second", url="http://127.0.0.1:9/hook")))

    pages = 0
    list_destinations = client.destinations.ListDestinations

    def counted(req: dst.ListDestinationsRequest) -> dst.ListDestinationsResponse:
        nonlocal pages
        pages += 1
        return list_destinations(req)

    listed = list(loft.paginate(counted, dst.ListDestinationsRequest(page_size=1)))
    assert sorted(d.name for d in listed) == ["receiver", "second"]
    assert pages >= 2
    assert all(d.secret_hint != setup.secret for d in listed)

    secret = client.destinations.GetDestinationSecret(dst.GetDestinationSecretRequest(destination_id=setup.destination.id)).secret
    assert secret.startswith("whsec_") and secret == setup.secret
    body = b'{"order":1}'
    now = int(time.time())
    headers = {"webhook-id": "evt_test", "webhook-timestamp": str(now), "webhook-signature": webhooks.sign(secret, "evt_test", now, body)}
    webhooks.verify(body, headers, secret)


def test_error_reasons(setup: Setup) -> None:
    client = setup.editor
    with pytest.raises(grpc.RpcError) as exc:
        client.destinations.CreateDestination(dst.CreateDestinationRequest(destination=dst.Destination(url="ftp://x")))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_DESTINATION_URL_FORBIDDEN

    with pytest.raises(grpc.RpcError) as exc:
        list(loft.paginate(client.destinations.ListDestinations, dst.ListDestinationsRequest(page_token="not-a-token")))
    assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN

    with pytest.raises(grpc.RpcError) as exc:
        client.destinations.GetDestination(dst.GetDestinationRequest(destination_id="dst_" + "0" * 26))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_RESOURCE_NOT_FOUND


def test_async_client() -> None:
    async def run() -> None:
        async with loft.AsyncClient(ADDR, api_key=os.environ["LOFT_TEST_API_KEY"], tls=False) as admin:
            listed = [p async for p in loft.paginate_async(admin.projects.ListProjects, projects.ListProjectsRequest(page_size=1))]
            assert listed and all(p.id.startswith("prj_") for p in listed)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await admin.destinations.ListDestinations(dst.ListDestinationsRequest())
            assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_PROJECT_REQUIRED

    asyncio.run(run())


def test_delivery(setup: Setup) -> None:
    """Publish → signed delivery → attempt listed."""
    client = setup.editor
    published = client.events.PublishEvent(order_created(42))
    assert published.deliveries_created == 1
    event = published.event

    delivery = setup.received.get(timeout=30)
    webhooks.verify(delivery.body, delivery.headers, setup.secret)
    assert delivery.headers["webhook-id"] == event.id
    assert delivery.headers["x-loft-event-type"] == "order.created"

    deadline = time.monotonic() + 30
    attempts: list[deliveries.Attempt] = []
    while not attempts and time.monotonic() < deadline:
        attempts = list(loft.paginate(client.deliveries.ListAttempts, deliveries.ListAttemptsRequest(event_id=event.id)))
        time.sleep(0.05)
    assert len(attempts) == 1 and attempts[0].response.status_code == 204


def order_created(order: int) -> ev.PublishEventRequest:
    payload = struct_pb2.Value()
    payload.struct_value.update({"order": order})
    return ev.PublishEventRequest(type="order.created", json=payload)


def test_watch(setup: Setup) -> None:
    """The project's feed from its creation (the destination and subscription
    made it resource_changed items), then resumed from the first item's
    cursor."""
    first: list[ev.WatchEventsResponse] = []
    start = ev.WatchEventsRequest()
    start.start_time.CopyFrom(setup.created)
    for item in setup.editor.watch(start, on_retry=no_retry):
        if item.WhichOneof("activity") != "heartbeat":
            assert item.WhichOneof("activity") == "resource_changed"
            first.append(item)
        if len(first) == 2:
            break
    for item in setup.editor.watch(ev.WatchEventsRequest(after_cursor=first[0].cursor), on_retry=no_retry):
        if item.WhichOneof("activity") != "heartbeat":
            assert item.cursor == first[1].cursor
            break


#: What one published event makes in the feed when its one destination answers 2xx.
DELIVERY_KINDS = [ev.ACTIVITY_KIND_EVENT_RECEIVED, ev.ACTIVITY_KIND_ATTEMPT_FINISHED, ev.ACTIVITY_KIND_DELIVERY_SUCCEEDED]


def no_retry(error: Optional[grpc.RpcError], delay: float) -> NoReturn:
    pytest.fail(f"the watch reconnected after {error!r}; the server is up")


class FeedCheck:
    """The items the events published so far must make, each to arrive once.
    Every call also checks the test's deadline: heartbeats (every 15 s) bound
    the wait for it."""

    def __init__(self, destination_id: str) -> None:
        self.destination_id = destination_id
        self.want: set[tuple[str, str]] = set()
        self.seen: set[tuple[str, str]] = set()
        self.deadline = time.monotonic() + 60

    def published(self, response: ev.PublishEventResponse) -> None:
        assert response.deliveries_created == 1
        self.want |= {(kind, response.event.id) for kind in ("event_received", "attempt_finished", "delivery_succeeded")}

    def see(self, item: ev.WatchEventsResponse) -> bool:
        """Records an item; False for a heartbeat."""
        assert time.monotonic() < self.deadline, f"timed out with {len(self.seen)} of {len(self.want)} items"
        assert item.cursor
        kind = item.WhichOneof("activity")
        if kind == "heartbeat":
            return False
        if kind == "event_received":
            assert item.event_received.event.type == "order.created"
            event_id = item.event_received.event.id
        elif kind == "attempt_finished":
            assert item.attempt_finished.attempt.response.status_code == 204
            event_id = item.attempt_finished.attempt.event_id
        elif kind == "delivery_succeeded":
            assert item.delivery_succeeded.delivery.destination_id == self.destination_id
            event_id = item.delivery_succeeded.delivery.event_id
        else:
            pytest.fail(f"{kind} is none of the kinds asked for")
        key = (kind, event_id)
        assert key in self.want, f"unexpected item {key}"
        assert key not in self.seen, f"{key} arrived twice"
        self.seen.add(key)
        return True


def test_watch_and_resume(setup: Setup) -> None:
    """loft.watch while events are published and delivered; stop part-way,
    publish more, resume from the last cursor: every item exactly once."""
    client = setup.editor
    feed = FeedCheck(setup.destination.id)
    # From now: the stream opens with a heartbeat, so events published after it are in the watch.
    cursor = ""
    for item in client.watch(ev.WatchEventsRequest(kinds=DELIVERY_KINDS), on_retry=no_retry):
        cursor = item.cursor
        if not feed.see(item):
            if not feed.want:
                for order in (1, 2):
                    feed.published(client.events.PublishEvent(order_created(order)))
        elif len(feed.seen) == 4:  # of 6: stop part-way
            break

    for order in (3, 4):
        feed.published(client.events.PublishEvent(order_created(order)))
    items = client.watch(ev.WatchEventsRequest(kinds=DELIVERY_KINDS, after_cursor=cursor), on_retry=no_retry)
    opening = next(items)
    assert opening.WhichOneof("activity") == "heartbeat" and opening.cursor == cursor
    for item in items:
        if feed.see(item) and feed.seen == feed.want:
            break
    assert len(feed.seen) == 12


def test_watch_bad_cursor(setup: Setup) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        next(setup.editor.watch(ev.WatchEventsRequest(after_cursor="not-a-cursor"), on_retry=no_retry))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_INVALID_CURSOR


def test_watch_and_resume_async(setup: Setup) -> None:
    """test_watch_and_resume and test_watch_bad_cursor with loft.AsyncClient."""

    async def run() -> None:
        async with loft.AsyncClient(ADDR, api_key=setup.editor_key, tls=False) as client:
            feed = FeedCheck(setup.destination.id)
            cursor = ""
            async with contextlib.aclosing(client.watch(ev.WatchEventsRequest(kinds=DELIVERY_KINDS), on_retry=no_retry)) as items:
                async for item in items:
                    cursor = item.cursor
                    if not feed.see(item):
                        if not feed.want:
                            for order in (1, 2):
                                feed.published(await client.events.PublishEvent(order_created(order)))
                    elif len(feed.seen) == 4:
                        break

            for order in (3, 4):
                feed.published(await client.events.PublishEvent(order_created(order)))
            resume = ev.WatchEventsRequest(kinds=DELIVERY_KINDS, after_cursor=cursor)
            async with contextlib.aclosing(client.watch(resume, on_retry=no_retry)) as items:
                opening = await anext(items)
                assert opening.WhichOneof("activity") == "heartbeat" and opening.cursor == cursor
                async for item in items:
                    if feed.see(item) and feed.seen == feed.want:
                        break
            assert len(feed.seen) == 12

            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await anext(client.watch(ev.WatchEventsRequest(after_cursor="not-a-cursor"), on_retry=no_retry))
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert loft.error_reason(exc.value) == ErrorReason.ERROR_REASON_INVALID_CURSOR

    asyncio.run(run())

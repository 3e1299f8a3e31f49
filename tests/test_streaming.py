"""The per-connection pieces on their own: the bounded outbox and the rate limiter."""

from __future__ import annotations

import asyncio

from server.predictions import Prediction
from server.ratelimit import TokenBucket
from server.streaming import Outbox, Outgoing
from tests.conftest import TIMEOUT_S


def prediction(seq: int) -> Outgoing:
    return Outgoing(seq, 0.0, Prediction((1.0,) + (0.0,) * 9))


def error(seq: int) -> Outgoing:
    return Outgoing(seq, 0.0, error_text=f"error {seq}")


async def test_outbox_keeps_only_the_newest_prediction() -> None:
    """A new prediction replaces a queued one; the replacement is reported."""
    outbox = Outbox(max_errors=4)
    assert outbox.put_prediction(prediction(1)) is False
    assert outbox.put_prediction(prediction(2)) is True
    assert outbox.put_prediction(prediction(5)) is True
    assert len(outbox) == 1
    assert (await outbox.get()).seq == 5


async def test_outbox_keeps_order_and_bounds_errors() -> None:
    """Errors keep their order around the prediction; beyond the bound the oldest go."""
    outbox = Outbox(max_errors=2)
    outbox.put_error(error(1))
    outbox.put_prediction(prediction(2))
    outbox.put_error(error(3))
    outbox.put_error(error(4))
    sent = []
    while len(outbox):
        sent.append((await outbox.get()).seq)
        outbox.sent()
    assert sent == [2, 3, 4]


async def test_outbox_join_waits_for_the_last_send() -> None:
    """`join()` returns only after the writer has reported the last message sent."""
    outbox = Outbox(max_errors=2)
    outbox.put_prediction(prediction(1))
    item = await outbox.get()
    joining = asyncio.create_task(outbox.join())
    await asyncio.sleep(0)
    assert not joining.done()
    assert item.seq == 1
    outbox.sent()
    await asyncio.wait_for(joining, TIMEOUT_S)


async def test_outbox_get_waits_for_a_message() -> None:
    """`get()` blocks until something is put."""
    outbox = Outbox(max_errors=2)
    getting = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not getting.done()
    outbox.put_error(error(7))
    assert (await asyncio.wait_for(getting, TIMEOUT_S)).seq == 7


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket allows `capacity` at once, then one per 1/rate seconds."""
    bucket = TokenBucket(rate_per_s=10.0, capacity=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert abs(bucket.wait_s(0.0) - 0.1) < 1e-9
    assert bucket.take(0.05) is False
    assert bucket.take(0.1) is True
    assert bucket.take(100.0) and bucket.take(100.0) and bucket.take(100.0)
    assert not bucket.take(100.0)

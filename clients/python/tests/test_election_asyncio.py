"""rlock.election_asyncio.Election: FIFO campaigns, resign, a killed connection, observers."""

from __future__ import annotations

import asyncio

from conftest import wait_until

import rlock
import rlock.asyncio
from rlock.election_asyncio import Election


def waiters(server, key) -> int:
    client = server.client()
    try:
        info = rlock.Lock(client, key).info()
        return 0 if info is None else info.waiters
    finally:
        client.close()


async def test_candidates_lead_in_order_and_resign_hands_over(server, key):
    client = server.async_client()
    first = Election(client, key)
    epoch = await first.campaign("a")
    assert first.is_leader
    assert await first.leader() == rlock.Leader(b"a", epoch)
    second = Election(client, key)
    third = Election(client, key)
    second_won = asyncio.ensure_future(second.campaign("b"))
    await asyncio.to_thread(wait_until, lambda: waiters(server, key) == 1)
    third_won = asyncio.ensure_future(third.campaign("c"))
    await asyncio.to_thread(wait_until, lambda: waiters(server, key) == 2)
    assert await first.resign()
    second_epoch = await asyncio.wait_for(second_won, 10)
    assert second_epoch > epoch
    assert second.is_leader
    assert not third_won.done()
    assert await second.resign()
    third_epoch = await asyncio.wait_for(third_won, 10)
    assert third_epoch > second_epoch
    assert (await third.leader()).value == b"c"
    assert await third.resign()
    await client.aclose()


async def test_a_killed_connection_tells_on_lost_and_a_rival_wins(server, key):
    leader_client = server.async_client(client_name="async-election-leader")
    rival_client = server.async_client()
    told = asyncio.Event()

    async def on_lost(election):
        told.set()

    leader = Election(leader_client, key, lease=1, on_lost=on_lost)
    epoch = await leader.campaign("leader")
    rival = Election(rival_client, key)
    rival_won = asyncio.ensure_future(rival.campaign("rival"))
    await asyncio.to_thread(wait_until, lambda: waiters(server, key) == 1)
    admin = server.client()
    for entry in admin.client_list():
        if entry.get("name") == "async-election-leader":
            admin.execute_command("CLIENT", "KILL", "ID", entry["id"])
    admin.close()
    assert await asyncio.wait_for(rival_won, 10) > epoch
    await asyncio.wait_for(told.wait(), 10)
    assert leader.lost.is_set()
    assert not leader.is_leader
    assert not await leader.resign(), "lost: nothing to resign"
    # the lost hold's session connection is closed in the background: let that finish
    await asyncio.gather(*rlock.asyncio._background)
    assert await rival.resign()
    await leader_client.aclose()
    await rival_client.aclose()


async def test_observers_see_every_epoch_in_order(server, key):
    client = server.async_client()
    seen: list[rlock.Leader | None] = []
    changed = asyncio.Condition()

    async def watch() -> None:
        async for leader in Election(client, key).observe():
            async with changed:
                seen.append(leader)
                changed.notify_all()
            if len(seen) >= 5:
                return

    async def wait_seen(n: int) -> None:
        async with changed:
            await asyncio.wait_for(changed.wait_for(lambda: len(seen) >= n), 10)

    observer = asyncio.ensure_future(watch())
    await wait_seen(1)
    epochs = []
    told = 1
    for value in ("a", "b"):
        election = Election(client, key)
        epochs.append(await election.campaign(value))
        told += 1
        await wait_seen(told)
        await election.resign()
        told += 1
        await wait_seen(told)
    await asyncio.wait_for(observer, 10)
    assert seen == [
        None,
        rlock.Leader(b"a", epochs[0]),
        None,
        rlock.Leader(b"b", epochs[1]),
        None,
    ]
    assert epochs[0] < epochs[1]
    await client.aclose()

"""The floor: what the hardware allows with the same client, to read every figure against."""

from __future__ import annotations

from agentmem.bench.harness import Context, Figures, compare

PINGS = 200


async def floor(ctx: Context) -> Figures:
    """One PING round trip (a loop of awaited PINGs), and one pipelined batch of PINGs."""
    client, batch = ctx.client, ctx.sizes.batch

    async def pings() -> None:
        for _ in range(PINGS):
            await client.ping()

    async def pipelined() -> None:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.ping()
            await pipe.execute()

    ctx.say("floor: PING loop and one pipelined batch")
    times = await compare({"ping": pings, "batch": pipelined}, ctx.sizes.repeat)
    return {
        "ping_rtt_us": times["ping"].scaled(1e6 / PINGS).as_dict(),
        "pipelined_batch_ms": times["batch"].scaled(1e3).as_dict(),
        "pipelined_per_command_us": times["batch"].scaled(1e6 / batch).as_dict(),
        "batch_size": batch,
    }

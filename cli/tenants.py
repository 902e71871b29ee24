"""``agentmem tenants add | list | revoke`` and ``agentmem audit``: who may use the service.

A key is printed once, by ``tenants add``, and stored nowhere (:mod:`memory.tenants`); the
other commands show key ids only. Adding and revoking a key is recorded in the tenant's audit
log (key id ``operator``: whoever runs the CLI holds the database's credentials).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from agentmem.cli.common import (
    app,
    console,
    fail,
    one_line_errors,
    servers,
    settings_from_env,
)

if TYPE_CHECKING:
    from agentmem.memory import Memory

T = TypeVar("T")
OPERATOR = "operator"  # the key id the audit log shows for what the CLI did

tenants_app = typer.Typer(
    help="Create, list and revoke tenants' API keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tenants_app, name="tenants")


def _with_memory(go: Callable[[Memory], Awaitable[T]]) -> T:
    """Run ``go`` on the memory layer of the configured (or local) servers."""
    import anyio

    from agentmem.memory import open_memory

    settings = settings_from_env()

    async def opened() -> T:
        async with open_memory(ready.memory_config(), "tenants") as memory:
            return await go(memory)

    with servers(settings, quiet=True) as ready:
        return anyio.run(opened)


@tenants_app.command("add")
@one_line_errors
def add(
    name: Annotated[str, typer.Argument(help="The tenant's name.", metavar="NAME")],
) -> None:
    """Make an API key for tenant NAME and print it once (it is stored only as a hash)."""
    from agentmem.memory.audit import AuditLog, AuditRecord
    from agentmem.memory.tenants import TenantKeys, validate_tenant

    validate_tenant(name)

    async def go(memory: Memory) -> tuple[str, str]:
        made = await TenantKeys(memory.db.pool).add(name)
        await AuditLog(memory.db.pool).record(AuditRecord(name, OPERATOR, "key.add", made.key_id))
        return made.key_id, made.key

    key_id, key = _with_memory(go)
    console().print(f"tenant {name}: key id {key_id}", highlight=False)
    console().print(key, highlight=False, soft_wrap=True)
    console().print("shown once: keep it secret (send it as 'Authorization: Bearer <key>')")


@tenants_app.command("list")
@one_line_errors
def list_keys(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's keys.", metavar="NAME")
    ] = None,
) -> None:
    """List the keys: tenant, key id, created, revoked (never a key itself)."""
    from rich.table import Table

    from agentmem.memory.tenants import KeyInfo, TenantKeys

    async def go(memory: Memory) -> list[KeyInfo]:
        return await TenantKeys(memory.db.pool).list(tenant)

    keys = _with_memory(go)
    if not keys:
        console().print("no keys yet; make one with: agentmem tenants add NAME")
        return
    table = Table(expand=False)
    for column in ("tenant", "key id", "created (UTC)", "revoked (UTC)"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        revoked = "-" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M:%S}"
        table.add_row(key.tenant, key.key_id, f"{key.created_at:%Y-%m-%d %H:%M:%S}", revoked)
    console().print(table)


@tenants_app.command("revoke")
@one_line_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id `tenants list` shows.", metavar="ID")],
) -> None:
    """Revoke a key: the next request that carries it is refused."""
    from agentmem.memory.audit import AuditLog, AuditRecord
    from agentmem.memory.tenants import TenantKeys

    async def go(memory: Memory) -> str | None:
        tenant = await TenantKeys(memory.db.pool).revoke(key_id)
        if tenant is not None:
            await AuditLog(memory.db.pool).record(
                AuditRecord(tenant, OPERATOR, "key.revoke", key_id)
            )
        return tenant

    tenant = _with_memory(go)
    if tenant is None:
        fail(f"no active key {key_id!r}; `agentmem tenants list` shows the keys")
    console().print(f"revoked key {key_id} of tenant {tenant}", highlight=False)


@app.command(short_help="Show who submitted, requeued or changed what.")
@one_line_errors
def audit(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's records.", metavar="NAME")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10000, help="Show the newest N.", metavar="N")
    ] = 100,
) -> None:
    """Show the audit log, oldest first: when, tenant, key id, action, target."""
    from rich.table import Table

    from agentmem.memory.audit import AuditLog, AuditRecord

    async def go(memory: Memory) -> list[AuditRecord]:
        return await AuditLog(memory.db.pool).read(tenant, limit)

    records = _with_memory(go)
    if not records:
        console().print("no audit records")
        return
    table = Table(expand=False)
    for column in ("at (UTC)", "tenant", "key id", "action", "target"):
        table.add_column(column, overflow="fold")
    for record in records:
        at = "-" if record.at is None else f"{record.at:%Y-%m-%d %H:%M:%S}"
        table.add_row(at, record.tenant, record.key_id or "-", record.action, record.target)
    console().print(table)

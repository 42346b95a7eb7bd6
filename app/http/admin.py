"""`/admin/`: keys CRUD and usage, for the platform team. Guarded by the admin key only;
a team key is refused like any wrong key. Errors have OpenAI's shape."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.http.errors import OpenAIError
from app.keys.models import KeyCreate, KeyCreated, KeyInfo, KeyLimits, UsageReport
from app.keys.secrets import AdminKeys
from app.keys.store import KeyNotFound, KeyStore
from app.keys.usage import build_report

_bearer = HTTPBearer(auto_error=False, description="an admin key (TIERSERVE_ADMIN_KEYS)")


def admin_router(store: KeyStore, admins: AdminKeys, strongest_tier: str) -> APIRouter:
    def require_admin(
            cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not admins.enabled:
            raise OpenAIError(403, "The admin API is disabled: set an admin key "
                                   "(TIERSERVE_ADMIN_KEYS or TIERSERVE_ADMIN_KEY_FILE).",
                              code="admin_disabled")
        if cred is None or not admins.check(cred.credentials):
            raise OpenAIError(401, "An admin key is required for /admin.", code="invalid_api_key")

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    async def _get(ref: str) -> KeyInfo:
        try:
            return await asyncio.to_thread(store.get, ref)
        except KeyNotFound:
            raise OpenAIError(404, f"No key {ref!r}.", code="key_not_found", param="key_id") from None

    @router.post("/keys", response_model=KeyCreated, status_code=201,
                 summary="Create a key (the key is shown in this response only)")
    async def create_key(spec: KeyCreate) -> KeyCreated:
        return await asyncio.to_thread(store.create, spec)

    @router.get("/keys", response_model=list[KeyInfo], summary="List keys")
    async def list_keys(team: str | None = None, include_revoked: bool = False) -> list[KeyInfo]:
        return await asyncio.to_thread(store.list, team, include_revoked)

    @router.get("/keys/{key_id}", response_model=KeyInfo, summary="Show a key (by id or prefix)")
    async def show_key(key_id: str) -> KeyInfo:
        return await _get(key_id)

    @router.patch("/keys/{key_id}", response_model=KeyInfo, summary="Replace a key's limits")
    async def update_key(key_id: str, limits: KeyLimits) -> KeyInfo:
        info = await _get(key_id)
        return await asyncio.to_thread(store.update_limits, info.id, limits)

    @router.delete("/keys/{key_id}", response_model=KeyInfo,
                   summary="Revoke a key (refused everywhere within the cache TTL)")
    async def revoke_key(key_id: str) -> KeyInfo:
        info = await _get(key_id)
        return await asyncio.to_thread(store.revoke, info.id)

    @router.post("/keys/{key_id}/rotate", response_model=KeyCreated,
                 summary="New secret for the same key; the old one stops working")
    async def rotate_key(key_id: str) -> KeyCreated:
        info = await _get(key_id)
        if not info.active:
            raise OpenAIError(400, f"Key {key_id!r} is revoked.", code="key_revoked", param="key_id")
        return await asyncio.to_thread(store.rotate, info.id)

    @router.get("/usage", response_model=UsageReport,
                summary="Requests, tokens, cost and routing savings per team, key and tier")
    async def usage(team: str | None = None,
                    since: Annotated[float | None, Query(description="epoch seconds")] = None
                    ) -> UsageReport:
        lines = await asyncio.to_thread(store.usage, team, since)
        return build_report(lines, strongest_tier, since)

    return router

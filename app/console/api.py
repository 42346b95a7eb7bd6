"""`/console`: the operator's page (static assets shipped in app/console/static) and its JSON
API under `/console/api/`. Guarded by `server.console` (off, loopback, on) and the admin key.

The page is static and holds no data; every figure comes from the API, which reads only
when called (Serve's status, Ray's state API, the keys database, this replica's decision
ring): nobody looking costs the data path nothing beyond the ring's append.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from app.config.schema import TierserveConfig
from app.console.recorder import DecisionLog, DecisionRecord
from app.console.status import TierView, tier_views
from app.http.errors import OpenAIError
from app.keys.secrets import AdminKeys
from app.keys.store import KeyStore
from app.keys.usage import build_report

ASSETS = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8"}
STATIC = Path(__file__).with_name("static")
_bearer = HTTPBearer(auto_error=False, description="an admin key (TIERSERVE_ADMIN_KEYS)")


def asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def is_loopback(request: Request) -> bool:
    """The peer, and every hop a proxy names in X-Forwarded-For, is a loopback address."""
    hosts = [request.client.host if request.client else ""]
    hosts += [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    try:
        return all(ipaddress.ip_address(h).is_loopback for h in hosts)
    except ValueError:  # e.g. "testclient", a hostname
        return False


@dataclass
class ConsoleDeps:
    """What the console reads; owned by the ingress."""

    config: TierserveConfig
    admins: AdminKeys
    store: KeyStore
    decisions: DecisionLog
    router: Any  # the router's DeploymentHandle (suspend/resume)
    app_name: str
    tracing_endpoint: str | None = None


class Overview(BaseModel):
    profile: str
    at: float
    admin_key_required: bool
    log_prompts: bool
    tracing: bool
    trace_url: str | None = None
    tiers: list[TierView]
    suspended: list[str]
    routing: dict[str, Any]
    live: dict[str, Any]


def _routing_config(config: TierserveConfig, used: dict[str, Any] | None = None) -> dict[str, Any]:
    """Routing as the console shows it. The ladder, thresholds and picker are the router's
    own (`used`: Router.routing_view) when it answered, else the config's; never the
    two-tier `threshold`, which a ladder profile leaves at its unused default."""
    r = config.routing
    used = used or {}
    ladder = used.get("ladder") or list(r.ladder)
    shares = dict(zip(r.ladder, r.shares(), strict=True)) if r.target_shares else {}
    return {"default_tier": r.default_tier, "weak_tier": r.weak_tier, "strong_tier": r.strong_tier,
            "ladder": ladder, "thresholds": used.get("thresholds", list(r.thresholds)),
            "thresholds_from": "router" if used else "config",
            "picker": used.get("picker") or (r.plugins.picker.name if r.plugins.picker else "ladder"),
            "scorer_version": used.get("scorer_version"), "target_shares": shares,
            "learned": r.learned.enabled, "affinity": r.affinity.enabled,
            "fallback": r.fallback.enabled, "allow_tier_header": r.allow_tier_header,
            "rules": [{"name": x.name, "tier": x.tier, "force": x.force,
                       "match": x.match.model_dump(exclude_defaults=True)} for x in r.rules]}


def console_router(deps: ConsoleDeps) -> APIRouter:
    mode = deps.config.server.console.mode

    def reachable(request: Request) -> None:
        if mode == "off":
            raise OpenAIError(404, "The console is off (server.console.mode).", code="not_found")
        if mode == "loopback" and not is_loopback(request):
            raise OpenAIError(403, "The console is served to loopback clients only "
                                   "(server.console.mode: loopback).", code="console_loopback_only")
        if mode == "on" and not deps.admins.enabled:
            raise OpenAIError(403, "The console needs an admin key to be configured "
                                   "(TIERSERVE_ADMIN_KEYS or TIERSERVE_ADMIN_KEY_FILE).",
                              code="admin_disabled")

    def admin(request: Request,
              cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        reachable(request)
        if deps.admins.enabled and (cred is None or not deps.admins.check(cred.credentials)):
            raise OpenAIError(401, "An admin key is required for the console.", code="invalid_api_key")

    pages = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(reachable)])

    @pages.get("")
    async def console_root() -> RedirectResponse:
        return RedirectResponse("console/", status_code=307)  # relative: works under any prefix

    @pages.get("/")
    async def index() -> Response:
        return Response(asset("index.html"), media_type=ASSETS["index.html"],
                        headers={"cache-control": "no-store"})

    @pages.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in ASSETS:
            raise OpenAIError(404, f"No console asset {name!r}.", code="not_found")
        return Response(asset(name), media_type=ASSETS[name], headers={"cache-control": "no-cache"})

    api = APIRouter(prefix="/console/api", tags=["console"], dependencies=[Depends(admin)])

    async def suspended() -> list[str]:
        try:
            return list(await asyncio.wait_for(deps.router.suspended.remote(), 5))
        except Exception:  # the router may be restarting: show the tiers anyway
            return []

    async def routing_used() -> dict[str, Any] | None:
        try:
            return dict(await asyncio.wait_for(deps.router.routing_view.remote(), 5))
        except Exception:  # restarting, or an older router: the config's values instead
            return None

    @api.get("/overview", response_model=Overview, summary="Tiers, routing and live shares")
    async def overview() -> Overview:
        paused, used = await asyncio.gather(suspended(), routing_used())
        tiers = await tier_views(deps.config, deps.app_name, set(paused))
        return Overview(profile=deps.config.profile, at=time.time(),
                        admin_key_required=deps.admins.enabled,
                        log_prompts=deps.config.server.log_prompts,
                        tracing=deps.tracing_endpoint is not None,
                        trace_url=deps.config.server.tracing.trace_url, tiers=tiers, suspended=paused,
                        routing=_routing_config(deps.config, used), live=deps.decisions.shares())

    @api.get("/decisions", response_model=list[DecisionRecord], summary="Recent routing decisions")
    async def decisions(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[DecisionRecord]:
        return deps.decisions.recent(limit)

    @api.get("/teams", summary="Teams, their keys (no secrets) and spend, read-only")
    async def teams(since: Annotated[float | None, Query(description="epoch seconds")] = None
                    ) -> dict[str, Any]:
        keys = await asyncio.to_thread(deps.store.list, None, True)
        if not keys:
            return {"keys": [], "usage": None}
        lines = await asyncio.to_thread(deps.store.usage, None, since)
        report = build_report(lines, deps.config.routing.strong_tier, since)
        return {"keys": [k.model_dump() for k in keys], "usage": report.model_dump()}

    async def _set(tier: str, on: bool) -> dict[str, list[str]]:
        if tier not in {t.name for t in deps.config.tiers}:
            raise OpenAIError(404, f"No tier {tier!r}.", code="not_found", param="tier")
        return {"suspended": list(await deps.router.set_suspended.remote(tier, on))}

    @api.post("/tiers/{tier}/suspend", summary="Route no `auto` traffic to a tier")
    async def suspend(tier: str) -> dict[str, list[str]]:
        return await _set(tier, True)

    @api.post("/tiers/{tier}/resume", summary="Route `auto` traffic to a tier again")
    async def resume(tier: str) -> dict[str, list[str]]:
        return await _set(tier, False)

    router = APIRouter()
    router.include_router(pages)
    router.include_router(api)
    return router

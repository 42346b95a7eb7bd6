"""The OpenAI-compatible HTTP ingress: validate, admit, route, dispatch, relay."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.batching import SHUTDOWN_FLUSH_S
from app.config.schema import TierserveConfig
from app.console.api import ConsoleDeps, console_router
from app.console.recorder import DecisionLog
from app.http.admin import admin_router
from app.http.body import parse_json_object, read_limited
from app.http.errors import OpenAIError, from_validation_error, install_error_handlers
from app.http.feedback import feedback_router
from app.http.limits import Admission, load_api_keys
from app.http.openapi import add_component_schemas, generation_route
from app.http.request_id import RequestIdMiddleware
from app.keys.counters import make_counters
from app.keys.enforcer import KeyEnforcer, Principal, Ticket
from app.keys.models import UsageEvent
from app.keys.secrets import AdminKeys
from app.keys.store import open_store, redact_url
from app.keys.traffic import TrafficStore
from app.keys.usage import UsageRecorder
from app.protocol.internal import RouteDecision, RouteRequest, TierCall, TierError, TierFinal
from app.protocol.openai import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from app.routing.features import estimate_tokens
from app.telemetry.request import RequestTrace
from app.telemetry.tracing import setup as setup_tracing
from deployments.dispatch import Dispatcher, Opened
from deployments.elastic import RunningReplicas, avoid_suspended
from deployments.metrics import IngressMetrics, reason_kind
from deployments.relay import StreamRelay

log = logging.getLogger("ray.serve.tierserve.requests")
AUTO = "auto"
MAX_SESSION_ID = 256  # the affinity store keeps one entry per session: keys stay small
_REQUEST_MODELS: dict[str, type[ChatCompletionRequest] | type[CompletionRequest]] = {
    "chat": ChatCompletionRequest, "completion": CompletionRequest}


@dataclass
class RequestRecord:
    """What one request did; becomes one JSON log line and the metrics."""

    request_id: str
    endpoint: str
    start: float = field(default_factory=time.perf_counter)
    tier: str = "none"
    reason: str = "none"
    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    attempts: int = 0
    stream: bool = False
    prompt: str | None = None
    team: str | None = None  # keyed requests only
    ticket: Ticket | None = None  # what the key reserved; reconciled when the request ends
    limit_headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-*
    served_by: list[str] = field(default_factory=list)  # tiers after the first, by migration
    model: str | None = None
    decision: RouteDecision | None = None  # the router's, for the console
    trace: RequestTrace | None = None  # spans, when tracing is on

    def headers(self) -> dict[str, str]:
        # x-request-id is set by Serve's proxy (it echoes a client's or makes one).
        headers = {**self.limit_headers, "x-tierserve-tier": self.tier,
                   "x-tierserve-route-reason": self.reason}
        if self.decision is not None and self.decision.contributions:
            headers["x-tierserve-route-explain"] = self.decision.explain()  # each plugin's part
        if self.trace is not None and self.trace.traceparent:
            headers["traceparent"] = self.trace.traceparent  # W3C: the ingress's server span
        return headers


class _Once:
    """Calls `fn` the first time it is called, never again."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class _ClosingStream(StreamingResponse):
    """A stream that ends its request (in-flight slot, metrics, the key's reservation) even
    when the client leaves before the body iterator ever starts."""

    def __init__(self, content: AsyncIterator[bytes], on_close: _Once, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


class Gateway:
    """The ingress's logic, apart from HTTP plumbing."""

    def __init__(self, config: TierserveConfig, router: DeploymentHandle,
                 tiers: dict[str, DeploymentHandle]) -> None:
        self.config = config
        self.router = router
        self.tiers = tiers
        self.metrics = IngressMetrics()
        self.admission = Admission(config.server, load_api_keys(config.server.api_keys_env))
        keys = config.server.keys
        self.store = open_store(keys)
        log.info("keys database: %s", redact_url(self.store.url))
        self.usage = UsageRecorder(self.store, keys.usage_flush_s, keys.usage_batch_max)
        counters_url = os.environ.get(keys.counters_url_env) or keys.counters_url
        self.keys = KeyEnforcer(config, self.store, make_counters(counters_url, keys.redis_outage),
                                load_api_keys(config.server.api_keys_env), on_usage=self._on_usage)
        self.admins = AdminKeys.from_env(keys.admin_keys_env, keys.admin_key_file_env)
        self._finishing: set[asyncio.Task] = set()
        self._rank = {t.name: i for i, t in enumerate(config.tiers)}
        self.running = RunningReplicas(config, _app_name(), config.routing.fallback.health_poll_s)
        self.dispatcher = Dispatcher(tiers, router, config.routing.fallback, self.metrics,
                                     config.server.retry_after_s, config.tiers, cold=self.running.cold)
        self._ready = False
        console = config.server.console
        self.decisions = DecisionLog(console.recent_decisions if console.mode != "off" else 0)
        self.tracing = setup_tracing(config.server.tracing, "ingress")

    # -- admission and parsing -------------------------------------------------
    async def parse(self, request: Request, endpoint: str) -> tuple[dict[str, Any], Any]:
        server = self.config.server
        raw = await read_limited(request.stream(), request.headers.get("content-length"),
                                 server.max_body_bytes)
        body = parse_json_object(raw)
        try:
            parsed = _REQUEST_MODELS[endpoint].model_validate(body)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        if barred := [f for f in parsed.vllm_extensions() if f not in server.allowed_vllm_extensions]:
            raise OpenAIError(400, f"'{barred[0]}' is a vLLM extension this server does not accept "
                                   "(server.allowed_vllm_extensions).",
                              code="unsupported_parameter", param=barred[0])
        max_tokens = parsed.requested_max_tokens()
        if max_tokens is not None and max_tokens > server.max_tokens_limit:
            raise OpenAIError(400, f"max_tokens {max_tokens} exceeds this server's limit of "
                                   f"{server.max_tokens_limit}.",
                              code="max_tokens_too_large", param="max_tokens")
        if parsed.model != AUTO and self.config.tier_for_model(parsed.model) is None:
            known = [AUTO, *(t.served_model_name for t in self.config.tiers)]
            raise OpenAIError(404, f"The model '{parsed.model}' does not exist. Available: {known}.",
                              code="model_not_found", param="model")
        return body, parsed

    def check_pins(self, principal: Principal, parsed: Any, request: Request) -> None:
        """A key may be barred from some tiers, or from choosing its tier at all."""
        named = self.config.tier_for_model(parsed.model)
        self.keys.check_pin(principal, named.name if named else None, "model")
        header = request.headers.get("x-tierserve-tier")
        if header and self.config.routing.allow_tier_header:
            by_header = self.config.tier_for_model(header)
            self.keys.check_pin(principal, by_header.name if by_header else None, "header")

    def within_key(self, decision: RouteDecision, principal: Principal) -> RouteDecision:
        """Keep an automatic decision inside the key's tiers: the strongest allowed tier not
        stronger than the router's choice, else the weakest allowed."""
        if principal.key is None or principal.key.tiers is None:
            return decision
        allowed = [t for t in self._rank if principal.may_use(t)]
        fallbacks = [t for t in decision.fallbacks if t in allowed]
        if decision.tier in allowed:
            return decision.model_copy(update={"fallbacks": fallbacks})
        if not allowed:
            raise OpenAIError(403, "This API key may use no configured tier.", code="tier_not_allowed")
        rank = self._rank.get(decision.tier, 0)
        below = [t for t in allowed if self._rank[t] <= rank]
        tier = below[-1] if below else allowed[0]
        return decision.model_copy(update={"tier": tier, "reason": f"key:{decision.reason}",
                                           "fallbacks": [t for t in fallbacks if t != tier]})

    async def decide(self, parsed: Any, endpoint: str, record: RequestRecord,
                     request: Request, may_pin: bool = True) -> RouteDecision:
        named = self.config.tier_for_model(parsed.model)
        if named is not None:  # pinned by the client: no rules, affinity or fallback apply, no hop
            return RouteDecision(tier=named.name, reason="model")
        session_id = request.headers.get("x-session-id") or parsed.user
        if session_id is not None and len(session_id) > MAX_SESSION_ID:
            raise OpenAIError(400, f"x-session-id must be at most {MAX_SESSION_ID} characters.",
                              code="invalid_request", param="x-session-id")
        route_req = RouteRequest(
            request_id=record.request_id, endpoint=endpoint, model=parsed.model,
            prompt_text=parsed.prompt_text(), turns=parsed.turns(),
            max_tokens=parsed.requested_max_tokens(),
            # A key that may not pin its tier cannot force one through reasoning_effort either.
            reasoning_effort=getattr(parsed, "reasoning_effort", None) if may_pin else None,
            session_id=session_id,
            tier_header=request.headers.get("x-tierserve-tier") if may_pin else None,
            traceparent=record.trace.open("ingress.route") if record.trace else None,
            user=parsed.user, team=record.team,
        )
        budget_s = self.config.routing.fallback.decision_budget_ms / 1000
        try:
            return await asyncio.wait_for(self.router.route.remote(route_req), budget_s)
        except TimeoutError:  # a slow router must not stall the request
            log.warning("router slower than its %.0f ms budget; using the default tier", budget_s * 1000)
            return self._default_decision("router_timeout")
        except Exception as exc:  # never lose a request because the router is down
            log.warning("router unavailable (%r); using the default tier", exc)
            return self._default_decision("router_unavailable")

    def _default_decision(self, reason: str) -> RouteDecision:
        """The default tier when the router cannot answer, with the other tiers as fallbacks
        (cheapest first), so a tier lost with the router does not fail the request."""
        default = self.config.routing.default_tier
        others = [t.name for t in sorted(self.config.tiers, key=lambda t: t.cost_per_1k_tokens)
                  if t.name != default]
        return RouteDecision(tier=default, reason=reason, fallbacks=others)

    # -- the request -------------------------------------------------------------
    async def generate(self, request: Request, endpoint: str) -> Response:
        record = RequestRecord(_request_id(request), endpoint)
        request.state.request_id = record.request_id
        record.trace = RequestTrace.start(self.tracing, request.headers, endpoint, request.url.path,
                                          record.request_id)
        try:
            principal = await self.keys.authenticate(request.headers.get("authorization"))
            record.team = principal.team if principal.key else None
            record.limit_headers = await self.keys.admit_request(principal)
            self.admission.rate_limit(principal.ident)
            body, parsed = await self.parse(request, endpoint)
            self.check_pins(principal, parsed, request)
            if record.trace:
                record.trace.mark("ingress.admission", **{"tierserve.team": record.team})
        except OpenAIError as exc:
            return self._reject(exc, record)
        record.stream, record.model = parsed.stream, parsed.model
        if self.config.server.log_prompts:
            record.prompt = parsed.prompt_text()
        try:
            decision = avoid_suspended(self.within_key(
                await self.decide(parsed, endpoint, record, request, principal.may_pin), principal),
                self.config)
            record.tier, record.reason, record.decision = decision.tier, decision.reason, decision
            if record.trace:
                record.trace.close("ingress.route", {"tierserve.tier": decision.tier,
                                                      "tierserve.route_reason": decision.reason})
            record.ticket = await self.keys.reserve(principal, decision.tier,
                                                    _prompt_estimate(parsed),
                                                    parsed.requested_max_tokens())
            record.limit_headers |= record.ticket.headers
        except OpenAIError as exc:
            return self._reject(exc, record)
        try:
            self.admission.enter()
        except OpenAIError as exc:
            return self._reject(exc, record, cause="overload")
        self.metrics.in_flight.set(self.admission.in_flight)
        try:
            wants_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            if parsed.stream:
                body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            call = TierCall(request_id=record.request_id, endpoint=endpoint, body=body,
                            default_max_tokens=self.config.server.default_max_tokens,
                            traceparent=record.trace.open("ingress.dispatch") if record.trace else None)
            opened = await self.dispatcher.open(call, decision)
        except OpenAIError as exc:
            self._leave()
            if record.trace:
                record.trace.close("ingress.dispatch", error=str(exc.code))
            return self._finish_error(exc, record)
        except BaseException:
            self._leave()
            self._finish_key(record)  # give the key's reservation back
            raise
        record.tier, record.reason, record.attempts = opened.tier, opened.reason, opened.attempts
        if record.trace:
            record.trace.close("ingress.dispatch", {"tierserve.tier": opened.tier,
                                                     "tierserve.attempts": opened.attempts,
                                                     "tierserve.route_reason": opened.reason})
        if isinstance(opened.first, (TierError, TierFinal)):
            self._leave()
            opened.rest.cancel()
            return self._final(opened.first, record)
        relay = StreamRelay(opened, call, record, wants_usage,
                            self.config.tier(opened.tier).stream_idle_timeout_s,
                            reopen=self.dispatcher.open, fallbacks=decision.fallbacks,
                            max_migrations=self.config.routing.fallback.max_migrations,
                            on_migrate=lambda a, b: self._migrated(record, a, b),
                            on_replica_death=self.dispatcher.replica_died)
        done = _Once(lambda: self._end_stream(opened, record))
        return _ClosingStream(self._relay(relay, done), done, media_type="text/event-stream",
                              headers={**record.headers(), "cache-control": "no-cache"})

    @staticmethod
    async def _relay(relay: StreamRelay, done: _Once) -> AsyncIterator[bytes]:
        try:
            async for chunk in relay:
                yield chunk
        finally:
            done()

    def _migrated(self, record: RequestRecord, from_tier: str, to_tier: str) -> None:
        record.served_by.append(to_tier)
        if record.trace:
            record.trace.event("migration", **{"tierserve.from_tier": from_tier,
                                               "tierserve.to_tier": to_tier})
        self.metrics.migrations.inc(tags={"from_tier": from_tier, "to_tier": to_tier})

    def _end_stream(self, opened: Opened, record: RequestRecord) -> None:
        opened.rest.cancel()
        self._leave()
        self._observe(record)

    def _final(self, out: TierError | TierFinal, record: RequestRecord) -> Response:
        if isinstance(out, TierError):
            return self._finish_error(engine_error(out), record)
        usage = out.body.get("usage") or {}
        record.prompt_tokens = usage.get("prompt_tokens", 0)
        record.completion_tokens = usage.get("completion_tokens", 0)
        record.ttft_s = time.perf_counter() - record.start
        self._observe(record)
        return JSONResponse(out.body, headers=record.headers())

    def _reject(self, exc: OpenAIError, record: RequestRecord, cause: str | None = None) -> Response:
        causes = {401: "auth", 403: "permission", 429: "rate_limit", 404: "not_found",
                  413: "validation", 503: "overload"}
        cause = cause or ("budget" if exc.code == "insufficient_quota"
                          else causes.get(exc.status, "validation"))
        self.metrics.rejections.inc(tags={"cause": cause})
        if record.team is not None and exc.status in (403, 429):
            self.metrics.key_rejections.inc(tags={"team": record.team, "cause": cause})
        return self._finish_error(exc, record)

    def _finish_error(self, exc: OpenAIError, record: RequestRecord) -> Response:
        record.status = exc.status
        self._observe(record)
        return exc.response(record.headers())

    def _leave(self) -> None:
        self.admission.leave()
        self.metrics.in_flight.set(self.admission.in_flight)

    def _on_usage(self, event: UsageEvent) -> None:
        self.usage.add(event)
        tags = {"team": event.team, "tier": event.tier}
        self.metrics.team_tokens.inc(event.prompt_tokens, tags={**tags, "kind": "prompt"})
        self.metrics.team_tokens.inc(event.completion_tokens, tags={**tags, "kind": "completion"})
        self.metrics.team_cost.inc(event.cost_usd, tags=tags)
        self.metrics.team_savings.inc(max(0.0, event.strongest_cost_usd - event.cost_usd),
                                      tags={"team": event.team})

    def _finish_key(self, record: RequestRecord) -> None:
        """Reconcile the key's reservation and record usage, after the response."""
        ticket, record.ticket = record.ticket, None
        if ticket is None or ticket.principal.key is None:
            return
        task = asyncio.get_running_loop().create_task(self.keys.finish(
            ticket, record.prompt_tokens, record.completion_tokens, record.status,
            record.endpoint, tier=record.tier))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def _observe(self, record: RequestRecord) -> None:
        self._finish_key(record)
        total = time.perf_counter() - record.start
        tier = record.tier
        self.metrics.requests.inc(tags={"tier": tier, "endpoint": record.endpoint,
                                        "status": str(record.status), "reason": reason_kind(record.reason)})
        if record.status < 400 or record.status == 499:
            self.metrics.e2e.observe(total, tags={"tier": tier, "endpoint": record.endpoint})
            self.metrics.prompt_tokens.inc(record.prompt_tokens, tags={"tier": tier})
            self.metrics.completion_tokens.inc(record.completion_tokens, tags={"tier": tier})
            if record.ttft_s is not None and record.stream:
                self.metrics.ttft.observe(record.ttft_s, tags={"tier": tier})
                if record.completion_tokens > 1:
                    tpot = (total - record.ttft_s) / (record.completion_tokens - 1)
                    self.metrics.tpot.observe(tpot, tags={"tier": tier})
        line = {"event": "request", "request_id": record.request_id, "endpoint": record.endpoint,
                "tier": tier, "reason": record.reason, "status": record.status,
                "stream": record.stream, "attempts": record.attempts,
                "migrated_to": record.served_by,
                "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
                "ttft_ms": None if record.ttft_s is None else round(record.ttft_s * 1000, 2),
                "latency_ms": round(total * 1000, 2)}
        if record.prompt is not None:
            line["prompt"] = record.prompt
        log.info(json.dumps(line))
        trace = record.trace  # kept: a non-streaming answer's headers are built after this
        if trace is not None:
            trace.end(record.status, tier, record.reason, record.attempts, record.ttft_s,
                      record.prompt_tokens, record.completion_tokens, record.served_by)
        if self.decisions.enabled:
            self.decisions.add({**line, "decision": record.decision, "at": time.time(),
                                "model": record.model, "team": record.team,
                                "trace_id": trace.trace_id if trace else None})

    async def close(self, timeout_s: float) -> bool:
        """At replica shutdown (after Serve's drain): let the key reconciliations that record
        usage finish, then write the usage still queued; bounded so shutdown never waits long."""
        return await self.usage.close(timeout_s, producers=self._finishing)

    # -- models and health --------------------------------------------------------
    def models(self) -> ModelList:
        cards = [ModelCard(id=AUTO)]
        cards += [ModelCard(id=t.served_model_name, tier=t.name, max_model_len=t.max_model_len)
                  for t in self.config.tiers]
        return ModelList(data=cards)

    async def ready(self) -> tuple[bool, dict[str, str], str]:
        """Ready when every tier can serve: each tier with min_replicas >= 1 has answered its
        warm-up; one scaled to zero cold-starts on demand; a suspended one is not expected.
        And the router answers and sees those tiers running too."""
        router = await self._router_state()
        states: dict[str, str] = {}
        for tier in self.config.tiers:
            if tier.autoscaling.suspended:
                states[tier.name] = "suspended"
                continue
            if tier.autoscaling.min_replicas < 1:
                # Can serve either way: at zero replicas a request waits for a cold start.
                states[tier.name] = "scale-to-zero" if self.running.cold(tier.name) else "ready"
                continue
            try:
                ok = await asyncio.wait_for(self.tiers[tier.name].ready.remote(), timeout=2)
                states[tier.name] = "ready" if ok else "warming"
            except Exception as exc:
                states[tier.name] = f"unavailable: {type(exc).__name__}"
        ok = all(s in ("ready", "scale-to-zero", "suspended") for s in states.values())
        return ok and router == "ready", states, router

    async def _router_state(self) -> str:
        try:
            down = await asyncio.wait_for(self.router.tiers_seen_down.remote(), timeout=2)
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return f"sees no replica of {', '.join(down)}" if down else "ready"


def _app_name() -> str:
    """This replica's Serve application (the name tests and benchmarks deploy under)."""
    try:
        return serve.get_replica_context().app_name
    except Exception:  # built outside a replica (unit tests)
        return "tierserve"


def engine_error(out: TierError) -> OpenAIError:
    """vLLM's error (its own `type`, e.g. BadRequestError) in OpenAI's shape and types."""
    status = out.code if 400 <= out.code < 500 else 400
    if "context length" in out.message.lower():
        code = "context_length_exceeded"
    else:
        code = {404: "not_found", 413: "request_too_large"}.get(status, "invalid_request")
    return OpenAIError(status, out.message, code=code, param=out.param)


def _prompt_estimate(parsed: Any) -> int:
    """Prompt tokens for admission, before vLLM counts them: ~4 bytes a token plus the chat
    template's few tokens a message; the exact count reconciles when the request ends."""
    messages = getattr(parsed, "messages", None)
    return estimate_tokens(parsed.prompt_text()) + (8 * len(messages) + 8 if messages else 0)


def _request_id(request: Request) -> str:
    """The client's x-request-id when it is a sane one (RequestIdMiddleware bounds it)."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def create_http_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Tierserve", version="0.1.0", docs_url="/docs", redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(admin_router(gateway.store, gateway.admins, gateway.config.routing.strong_tier))
    app.include_router(feedback_router(  # labels for the router's decision records, same database
        TrafficStore(gateway.store.url), gateway.keys.authenticate, gateway.admission.rate_limit,
        wait_for_record_s=2 * gateway.config.routing.feedback.flush_s + 1))
    # The tiers' application (a test may bind another app's tiers to its own ingress).
    tiers_app = next((h.app_name for h in gateway.tiers.values()), None) or _app_name()
    app.include_router(console_router(ConsoleDeps(
        gateway.config, gateway.admins, gateway.store, gateway.decisions, gateway.router,
        tiers_app, gateway.config.server.tracing.resolved_endpoint())))

    @app.post("/v1/chat/completions", **generation_route(ChatCompletionRequest))
    async def chat(request: Request) -> Response:
        return await gateway.generate(request, "chat")

    @app.post("/v1/completions", **generation_route(CompletionRequest))
    async def completions(request: Request) -> Response:
        return await gateway.generate(request, "completion")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = add_component_schemas(get_openapi(
                title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/v1/models")
    async def models() -> ModelList:
        return gateway.models()

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> ModelCard:
        for card in gateway.models().data:
            if card.id == model_id:
                return card
        raise OpenAIError(404, f"The model '{model_id}' does not exist.", code="model_not_found")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, tiers, router = await gateway.ready()
        return JSONResponse({"ready": ok, "tiers": tiers, "router": router},
                            status_code=200 if ok else 503)

    return app


@serve.ingress()
class Ingress:
    """The graph's HTTP entry point; holds the router and tier handles."""

    def __init__(self, config: TierserveConfig, router: DeploymentHandle,
                 tiers: dict[str, DeploymentHandle]) -> None:
        self._gateway = Gateway(config, router, tiers)

    async def __del__(self) -> None:
        """Serve awaits this on replica shutdown (after the drain): usage still queued is written."""
        await self._gateway.close(SHUTDOWN_FLUSH_S)

    async def __serve_build_asgi_app__(self) -> FastAPI:
        return create_http_app(self._gateway)

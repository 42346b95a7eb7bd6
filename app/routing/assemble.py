"""The one place a routing pipeline is built from config: the router deployment,
`route-explain`, `route-eval`, `route-train` and the benchmarks all call `build_pipeline`.

`routing.plugins` lists plugins by kind; a kind left out gets today's default cascade:
pins model, header, rules; scorer learned; picker ladder; filters health, context-fit
(when fallback is on) and affinity (when on); plan fallback.
"""

from __future__ import annotations

from pydantic import ValidationError

from app.config.loader import ConfigError, source_of
from app.config.schema import PluginRef, RoutingConfig, TierserveConfig
from app.routing.affinity import AffinityStore, make_store
from app.routing.pipeline import Named, RoutePipeline
from app.routing.plugin import Plugin, Setup
from app.routing.registry import UnknownPlugin, plugin_class
from app.routing.scorer import ComplexityScorer


def plugin_refs(routing: RoutingConfig) -> dict[str, list[PluginRef]]:
    """Each kind's plugins as configured, or the default."""
    p, ref = routing.plugins, PluginRef.model_validate
    filters = [ref("health"), ref("context-fit")] if routing.fallback.enabled else []
    filters += [ref("affinity")] if routing.affinity.enabled else []
    scorers = [ref("learned")] if routing.learned.enabled else []
    return {
        "pins": p.pins if p.pins is not None else [ref("model"), ref("header"), ref("rules")],
        "scorers": p.scorers if p.scorers is not None else scorers,
        "picker": [p.picker or ref("ladder")],
        "filters": p.filters if p.filters is not None else filters,
        "plan": [p.plan or ref("fallback")],
    }


def _resolve(config: TierserveConfig) -> dict[str, list[tuple[PluginRef, type[Plugin], Setup]]]:
    """Classes and validated params of every plugin; ConfigError naming file and field."""
    errors: list[str] = []
    out: dict[str, list[tuple[PluginRef, type[Plugin], Setup]]] = {}
    for kind, refs in plugin_refs(config.routing).items():
        out[kind] = []
        single = kind in ("picker", "plan")
        for i, r in enumerate(refs):
            field = f"routing.plugins.{kind}" + ("" if single else f"[{i}]")
            where = source_of(config.profile, ("routing", "plugins", kind))
            try:
                cls = plugin_class(r.name, kind)
                params = cls.Params.model_validate(r.params)
            except UnknownPlugin as exc:
                errors.append(f"{where}: {field}.name: {exc}")
                continue
            except ValidationError as exc:
                errors += [f"{where}: {field}.params.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors()]
                continue
            out[kind].append((r, cls, Setup(config, params)))
    if errors:
        raise ConfigError("invalid routing plugins:\n  " + "\n  ".join(errors))
    return out


def check_plugins(config: TierserveConfig) -> None:
    """Raise ConfigError if `routing.plugins` names an unknown plugin or bad params
    (`tierserve config check` runs it; building does too)."""
    _resolve(config)


def build_pipeline(config: TierserveConfig, *, scorer: ComplexityScorer | None = None,
                   store: AffinityStore | None = None) -> RoutePipeline:
    """The pipeline `config` describes. `scorer` replaces the learned scorer's artifact
    (tests, route-eval of a candidate); `store` defaults to the configured affinity store."""
    aff = config.routing.affinity
    if store is None and aff.enabled:
        store = make_store(aff.store_url, aff.ttl_s, aff.max_sessions)
    built: dict[str, list[Named]] = {}
    for kind, items in _resolve(config).items():
        built[kind] = []
        for ref, cls, setup in items:
            setup = Setup(config, setup.params, store, scorer)
            try:
                plugin = cls(setup)
            except ValueError as exc:
                where = source_of(config.profile, ("routing", "plugins", kind))
                raise ConfigError(f"{where}: routing.plugins.{kind} {ref.name!r}: {exc}") from exc
            built[kind].append(Named(ref.name, plugin, ref.weight))
    return RoutePipeline(config, built["pins"], built["scorers"], built["picker"][0],
                         built["filters"], built["plan"][0])

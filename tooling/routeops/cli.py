"""Wires learning from traffic into the routing commands (tooling/cli.py calls `add_routeops_commands`
after `add_routing_commands`): `route-train --from-feedback DB_URL`, `route-eval --shadow`,
and `route-promote`. Here, not in tooling/routing/cli.py: these read the keys database, and the
routing package never imports app.keys (runtime layers)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from app.config.loader import REPO_ROOT, load_config, source_of


def _db_url(args: argparse.Namespace, url: str | None) -> str:
    from app.keys.store import resolve_db_url

    return url or resolve_db_url(load_config(args.profile).server.keys)


def _with_feedback(train: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if args.from_feedback:
            from app.keys.traffic import TrafficStore
            from tooling.routeops.labels import feedback_rows

            config = load_config(args.profile)
            store = TrafficStore(_db_url(args, args.from_feedback))
            found = feedback_rows(store.labelled(), config.routing.weak_tier, config.routing.strong_tier)
            store.close()
            print(f"feedback: {found.used} labelled decisions used, {found.skipped_no_features} "
                  f"without features (routing.feedback.record_features off), "
                  f"{found.skipped_uninformative} that say nothing about the weak tier")
            if not found.used:
                print("no usable labelled traffic; nothing to add", file=sys.stderr)
                return 2
            args.feedback_rows = found.rows
        return train(args)
    return run


def _with_shadow(evaluate: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if not args.shadow:
            return evaluate(args)
        import time

        from app.keys.traffic import TrafficStore
        from tooling.routeops.shadow import compare, text

        config = load_config(args.profile)
        store = TrafficStore(_db_url(args, args.db))
        since = time.time() - args.since_hours * 3600
        report = compare(store.recent(args.limit, since), store.labelled(since),
                         config.routing.weak_tier, config.routing.strong_tier)
        store.close()
        print(json.dumps(report.as_json()) if args.json else text(report))
        return 0 if report.n else 2
    return run


def _promote(args: argparse.Namespace) -> int:
    import yaml

    from app.routing.scorer import load_scorer
    from app.serve_config import dump_serve_config, profile_of, render_serve_config
    from tooling.routeops.promote import how_it_travels, set_learned

    artifact = args.artifact if args.artifact.exists() else REPO_ROOT / args.artifact
    load_scorer(artifact)  # refuse one that does not load here
    try:  # as configs name artifacts: relative to the repo root when inside it
        value = str(artifact.resolve().relative_to(REPO_ROOT))
    except ValueError:
        value = str(artifact.resolve())
    config = load_config(args.profile)
    key = "shadow_artifact" if args.shadow else "artifact"
    path = Path(source_of(args.profile, ("routing", "learned", key)))
    set_learned(path, key, value)
    if not args.shadow and config.routing.learned.shadow_artifact == value:
        set_learned(Path(source_of(args.profile, ("routing", "learned", "shadow_artifact"))),
                    "shadow_artifact", None)  # the shadow is live now
    print(f"{path}: learned.{key} = {value}")
    if not args.shadow and not args.keep_thresholds:
        from tooling.routing.cli import _train

        # The new scorer's own thresholds for the profile's target shares (route-train
        # --calibrate-only --write-config), so the tier shares stay where policy puts them.
        calibrate = argparse.Namespace(
            profile=args.profile, target_shares=args.target_shares,
            target_reasoning_share=args.target_reasoning_share, calibrate_only=True,
            write_config=True, data=args.data, seed=0, scorer="embedding", out=None)
        if _train(calibrate):
            return 2
    out = Path(args.serve_config)
    if out.exists() and profile_of(out.read_text()) != args.profile:
        print(f"{out} is rendered from another profile; not rewriting it", file=sys.stderr)
        return 2
    http = (yaml.safe_load(out.read_text()) or {}).get("http_options", {}) if out.exists() else {}
    doc = render_serve_config(load_config(args.profile), http_host=http.get("host", "127.0.0.1"),
                              http_port=http.get("port", 8000))
    out.write_text(dump_serve_config(doc, args.profile))
    print(f"wrote {out} (only the router's user_config changed: a rolling update in place)")
    print(how_it_travels(value))
    if args.deploy:
        from tooling.local_cluster import engine_env, run_ray_cli

        serve = str(Path(sys.executable).with_name("serve"))
        run_ray_cli([serve, "deploy", str(out), "--address", args.deploy], engine_env(), "serve deploy")
        print(f"deployed to {args.deploy}")
    else:
        print(f"deploy with `serve deploy {out}`")
    return _kuberay(args, value)


def _kuberay(args: argparse.Namespace, promoted: str) -> int:
    """Re-render the chart's values with --k8s-out; else say how."""
    from app.config.live_artifacts import is_shipped
    from tooling.routeops.promote import kuberay_steps

    if args.k8s_out:
        from app.config import ConfigError
        from tooling.k8s.render import RenderError, render, write_out

        try:
            rendered = render(args.k8s_values, profile=args.profile)
        except (RenderError, ConfigError) as exc:
            print(f"KubeRay values not rendered: {exc}", file=sys.stderr)
            return 2
        for warning in rendered.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        write_out(rendered, args.k8s_out)
    print(kuberay_steps(args.profile, args.k8s_values, args.k8s_out, is_shipped(promoted)))
    return 0


def add_routeops_commands(subparsers: argparse._SubParsersAction) -> None:
    from tooling.routing.training.data import DEFAULT_DATA_DIR

    train = subparsers.choices["route-train"]
    train.add_argument("--from-feedback", metavar="DB_URL", nargs="?", const="",
                       help="also train on labelled traffic (POST /v1/feedback) from this database "
                            "(default: the configured keys database)")
    train.set_defaults(func=_with_feedback(train.get_default("func")))

    ev = subparsers.choices["route-eval"]
    ev.add_argument("--shadow", action="store_true",
                    help="instead: compare the live scorer with the shadow on recent traffic")
    ev.add_argument("--db", metavar="DB_URL", help="with --shadow: default the keys database")
    ev.add_argument("--since-hours", type=float, default=24.0, help="with --shadow")
    ev.add_argument("--limit", type=int, default=100_000, help="with --shadow: newest decisions")
    ev.set_defaults(func=_with_shadow(ev.get_default("func")))

    p = subparsers.add_parser("route-promote", help="make a scorer artifact live (or the shadow), "
                                                    "re-render the Serve config, optionally deploy")
    p.add_argument("artifact", type=Path)
    p.add_argument("--profile", default="local-cpu")
    p.add_argument("--shadow", action="store_true", help="run it as the shadow instead")
    p.add_argument("--keep-thresholds", action="store_true",
                   help="do not recalibrate the thresholds for the new scorer")
    p.add_argument("--target-shares", metavar="A,B,...", help="as route-train")
    p.add_argument("--target-reasoning-share", type=float, default=0.3, help="as route-train")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="calibration prompts")
    p.add_argument("--serve-config", default=str(REPO_ROOT / "serve_config.yaml"))
    p.add_argument("--deploy", metavar="DASHBOARD_URL", help="`serve deploy` it there")
    p.add_argument("--k8s-out", type=Path, metavar="DIR",
                   help="also re-render the KubeRay chart for the profile (as `tierserve k8s render "
                        "--out DIR`): its values.generated.yaml carries the promotion")
    p.add_argument("--k8s-values", type=Path, action="append", default=[], metavar="FILE",
                   help="with --k8s-out: values files, as `tierserve k8s render -f`")
    p.set_defaults(func=_promote)

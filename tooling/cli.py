"""The `tierserve` command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config.loader import REPO_ROOT, ConfigError, list_profiles, load_config
from app.serve_config import dump_serve_config, profile_of, render_serve_config
from tooling.local_cluster import LocalStack, StackError

SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
DEFAULT_PROFILE = "local-cpu"


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from tooling.models.tiny import make_tiny_models

    for path in make_tiny_models(Path(args.out)):
        print(f"wrote {path}")
    return 0


def render_text(profile: str, http_host: str = "127.0.0.1") -> str:
    from app.routing.assemble import check_plugins

    config = load_config(profile)
    check_plugins(config)  # an unknown routing plugin fails here, not at the router's start
    return dump_serve_config(render_serve_config(config, http_host=http_host), profile)


def cmd_config_render(args: argparse.Namespace) -> int:
    text = render_text(args.profile, args.http_host)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            print(f"{args.out} is out of date with configs/; run `tierserve config render`",
                  file=sys.stderr)
            return 1
        print(f"{args.out} matches configs/ (profile {args.profile})")
        return 0
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from app.routing.assemble import check_plugins

    for profile in list_profiles():
        config = load_config(profile)
        check_plugins(config)  # routing.plugins names and params (ConfigError naming file/field)
        print(f"{profile}: ok ({', '.join(t.name for t in config.tiers)})")
    return 0


def cmd_config_env(args: argparse.Namespace) -> int:
    """Shell exports for `ray start` on any node: Serve's data-path switches from configs/,
    and Ray's token auth (each node needs the head's token; see the README)."""
    print("# Ray 2.60 token auth: create the token once on the head (`ray get-auth-token --generate`),\n"
          "# then copy ~/.ray/auth_token to every node (or set RAY_AUTH_TOKEN_PATH/RAY_AUTH_TOKEN).")
    print("export RAY_AUTH_MODE=token")
    for key, value in load_config(args.profile).server.ray_serve.env().items():
        print(f"export {key}={value}")
    return 0


def _on_port(config_file: Path, port: int, temp_dir: Path) -> Path:
    """The Serve config to deploy: `config_file`, or a copy of it serving on `port` when that is
    not the port it names (`tierserve up --port N` with the default serve_config.yaml)."""
    import yaml

    doc = yaml.safe_load(config_file.read_text())
    http = doc.setdefault("http_options", {})
    if http.get("port", 8000) == port:
        return config_file
    http["port"] = port
    temp_dir.mkdir(parents=True, exist_ok=True)
    copy = temp_dir / f"serve_config.port{port}.yaml"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


def cmd_up(args: argparse.Namespace) -> int:
    from tooling import local_cluster as lc

    stack = lc.LocalStack(serve_port=args.port)
    config = load_config(profile_of(Path(args.config).read_text()))
    started = time.monotonic()
    # One node holds the whole graph: it advertises every node pool the profile names.
    token = lc.start_ray(stack, config.server.ray_serve, resources={p: 1 for p in config.node_pools()})
    lc.serve_deploy(stack, _on_port(Path(args.config), args.port, Path(stack.temp_dir)))
    try:
        state = lc.wait_ready(stack.base_url, args.timeout)
    except StackError as exc:
        raise StackError(f"{exc}\n  replica logs: {stack.temp_dir}/session_latest/logs/serve/; "
                         "stop the stack with `make down`") from exc
    print(f"\nTierserve is ready in {time.monotonic() - started:.0f}s: {state['tiers']}")
    print(f"  OpenAI API:     {stack.base_url}/v1")
    from app.console.links import console_line

    print(f"  Console:        {console_line(config, stack.base_url)}")
    print(f"  Ray dashboard:  {stack.dashboard_url}")
    if token:
        print(f"                  log in with Ray's auth token ({token}); print it with:\n"
              f"                  {Path(sys.executable).with_name('ray')} get-auth-token")
    print(f"  Ray metrics:    http://127.0.0.1:{stack.metrics_port}/metrics")
    if lc.api_is_open(stack.base_url):
        print("  API keys:       none exist, so the API is OPEN to anyone who can reach it;\n"
              "                  `tierserve keys create --team T --name N` makes one and closes it")
    else:
        print("  API keys:       required (Authorization: Bearer <key>; `tierserve keys list`)")
    print("\nTry:\n  curl -N "
          f"{stack.base_url}/v1/chat/completions -H 'content-type: application/json' \\\n"
          "    -d '{\"model\": \"auto\", \"stream\": true, \"max_tokens\": 32, "
          "\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'")
    print("\nStop it with: make down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from tooling import local_cluster as lc

    stack = lc.LocalStack(serve_port=args.port)
    try:
        ready = lc.wait_ready(stack.base_url, timeout_s=5)
    except StackError as exc:
        ready = {"ready": False, "error": str(exc)}
    print(json.dumps({"url": stack.base_url, **ready, "replicas": _replicas(stack),
                      "memory": lc.stack_memory_mb(stack)}, indent=2))
    return 0 if ready.get("ready") else 1


def _replicas(stack: LocalStack) -> dict[str, list[dict[str, str | None]]] | str:
    """Each tier's replicas with node pool, node and state; a reason when unreadable."""
    from app.serve_config import APP_NAME
    from tooling.tier_replicas import replicas_by_tier, tier_replicas

    try:
        cfg = Path(stack.temp_dir) / "serve_config.yaml"
        profile = profile_of((cfg if cfg.exists() else SERVE_CONFIG).read_text())
        return replicas_by_tier(tier_replicas(stack.dashboard_url, load_config(profile), APP_NAME))
    except Exception as exc:  # no cluster, or its dashboard is not answering
        return f"unavailable: {type(exc).__name__}: {str(exc)[:200]}"


def cmd_down(args: argparse.Namespace) -> int:
    from tooling import local_cluster as lc

    stack = lc.LocalStack()
    if not lc.stack_processes(stack):
        print(f"no Tierserve stack is running (Ray temp dir {stack.temp_dir})")
    removed = lc.stop(stack)
    if removed:
        print(f"removed {len(removed)} shared-memory segment(s) the engines left in /dev/shm")
    print("Tierserve stack stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="model utilities").add_subparsers(dest="models_cmd", required=True)
    tiny = models.add_parser("make-tiny", help="create the tiny offline test models")
    tiny.add_argument("--out", default=str(REPO_ROOT / "models"))
    tiny.set_defaults(func=cmd_make_tiny)
    from tooling.models.cli import add_model_commands

    add_model_commands(models)  # push, pull, list, verify

    config = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    render = config.add_parser("render", help="write serve_config.yaml from configs/")
    render.add_argument("--profile", default=DEFAULT_PROFILE)
    render.add_argument("--out", default=str(SERVE_CONFIG))
    render.add_argument("--check", action="store_true", help="fail if the file differs")
    render.add_argument("--http-host", default="127.0.0.1",
                        help="Serve's HTTP bind address; 0.0.0.0 on a multi-node cluster")
    render.set_defaults(func=cmd_config_render)
    check = config.add_parser("check", help="validate every profile")
    check.set_defaults(func=cmd_config_check)
    env = config.add_parser("env", help="print the env every Ray node needs (for `ray start`)")
    env.add_argument("--profile", default=DEFAULT_PROFILE)
    env.set_defaults(func=cmd_config_env)

    up = sub.add_parser("up", help="start a local Ray cluster and deploy Tierserve")
    up.add_argument("--config", default=str(SERVE_CONFIG))
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--timeout", type=float, default=900)
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="readiness and memory of the local stack")
    status.add_argument("--port", type=int, default=8000)
    status.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="stop the local stack")
    down.set_defaults(func=cmd_down)

    # Plain imports (not __import__), so the import contract in pyproject.toml sees them.
    from loadtests.cli import add_loadtest_commands
    from tooling.cluster_cli import add_cluster_commands
    from tooling.k8s.cli import add_k8s_commands
    from tooling.keytools.cli import add_keys_commands
    from tooling.routeops.cli import add_routeops_commands
    from tooling.routing.cli import add_routing_commands

    add_routing_commands(sub)
    add_routeops_commands(sub)  # extends route-train/route-eval: after them
    add_k8s_commands(sub)
    add_loadtest_commands(sub)
    add_keys_commands(sub)
    add_cluster_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"tierserve: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:  # the local stack failed in a way the user can act on
        print(f"tierserve: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`tierserve keys create|list|show|revoke|rotate` and `tierserve usage`, on the keys database
(the same one the ingress reads: TIERSERVE_DB_URL, else SQLite in .tierserve/)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime

from pydantic import ValidationError

from app.config.loader import load_config


def _store(args: argparse.Namespace):
    from app.keys.store import KeyStore, resolve_db_url

    cfg = load_config(args.profile)
    return KeyStore(args.db or resolve_db_url(cfg.server.keys)), cfg


_REL = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, future: bool) -> float:
    """'7d' (from now: ahead if `future`, else back), an ISO date/time (UTC if no zone), or epoch."""
    m = _REL.match(text.strip())
    if m:
        delta = int(m.group(1)) * _UNIT[m.group(2)]
        return time.time() + delta if future else time.time() - delta
    try:
        return float(text)
    except ValueError:
        pass
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _limits(info) -> str:
    parts = [f"tiers={','.join(info.tiers) if info.tiers else 'all'}",
             "pin" if info.allow_pin else "no-pin"]
    for name in ("rpm", "tpm", "max_concurrent"):
        if getattr(info, name) is not None:
            parts.append(f"{name}={getattr(info, name)}")
    if info.budget_tokens is not None:
        parts.append(f"budget={info.budget_tokens}tok/{info.budget_period}")
    if info.budget_usd is not None:
        parts.append(f"budget=${info.budget_usd:g}/{info.budget_period}")
    return " ".join(parts)


def _print_key(info, out=None) -> None:
    state = "revoked " + _when(info.revoked_at) if info.revoked_at else "active"
    # sys.stdout at call time, not at import (a test's captured stream may be gone by then)
    print(f"{info.id}  {info.prefix}…  team={info.team}  name={info.name}  {state}  "
          f"expires={_when(info.expires_at)}  {_limits(info)}", file=out or sys.stdout)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from app.keys.models import KeyCreate

    store, cfg = _store(args)
    tiers = [t.strip() for t in args.tiers.split(",")] if args.tiers else None
    known = {t.name for t in cfg.tiers}
    if tiers and set(tiers) - known:
        print(f"tierserve: unknown tier(s) {sorted(set(tiers) - known)}; tiers are {sorted(known)}",
              file=sys.stderr)
        return 2
    try:
        spec = KeyCreate(team=args.team, name=args.name, tiers=tiers, allow_pin=not args.no_pin,
                         rpm=args.rpm, tpm=args.tpm, max_concurrent=args.max_concurrent,
                         budget_tokens=args.budget_tokens, budget_usd=args.budget_usd,
                         budget_period=args.period if (args.budget_tokens or args.budget_usd) else None,
                         expires_at=parse_time(args.expires, future=True) if args.expires else None)
    except ValidationError as exc:
        print(f"tierserve: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    created = store.create(spec)
    if args.json:
        print(created.model_dump_json())
        return 0
    _print_key(created.info)
    print(f"\nkey (shown once, store it now): {created.key}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    keys = store.list(args.team, include_revoked=args.all)
    if args.json:
        print(json.dumps([k.model_dump() for k in keys]))
        return 0
    for info in keys:
        _print_key(info)
    if not keys:
        print("no keys" + (f" for team {args.team}" if args.team else ""))
    return 0


def _by_ref(fn):
    def run(args: argparse.Namespace) -> int:
        from app.keys.store import KeyNotFound

        store, _ = _store(args)
        try:
            return fn(store, args)
        except KeyNotFound as exc:
            print(f"tierserve: no such key: {exc}", file=sys.stderr)
            return 1
    return run


@_by_ref
def cmd_keys_show(store, args) -> int:
    info = store.get(args.key)
    if args.json:
        print(info.model_dump_json(indent=2))
    else:
        _print_key(info)
    return 0


@_by_ref
def cmd_keys_revoke(store, args) -> int:
    info = store.revoke(args.key)
    print(info.model_dump_json() if args.json else f"revoked {info.id} ({info.prefix}…); "
          "every ingress replica refuses it within 2 s")
    return 0


@_by_ref
def cmd_keys_rotate(store, args) -> int:
    created = store.rotate(args.key)
    if args.json:
        print(created.model_dump_json())
        return 0
    print(f"rotated {created.info.id}: the old key is refused within 2 s")
    print(f"new key (shown once, store it now): {created.key}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from app.keys.usage import build_report

    store, cfg = _store(args)
    since = parse_time(args.since, future=False) if args.since else None
    report = build_report(store.usage(args.team, since), cfg.routing.strong_tier, since)
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    print(f"usage since {_when(since) if since else 'the start'}; cost at each tier's "
          f"cost_per_1k_tokens; savings vs. all on '{report.strongest_tier}'\n")
    print(f"{'team':<16}{'key':<20}{'tier':<12}{'requests':>9}{'prompt':>10}{'completion':>12}"
          f"{'cost $':>12}{'on strongest $':>16}")
    for line in report.lines:
        print(f"{line.team:<16}{(line.key_name or line.key_id)[:19]:<20}{line.tier:<12}"
              f"{line.requests:>9}{line.prompt_tokens:>10}{line.completion_tokens:>12}"
              f"{line.cost_usd:>12.6f}{line.strongest_cost_usd:>16.6f}")
    print()
    for t in report.teams:
        print(f"team {t.team}: {t.requests} requests, {t.tokens} tokens, cost ${t.cost_usd:.6f}; "
              f"on {report.strongest_tier} ${t.strongest_cost_usd:.6f}: routing saved "
              f"${t.savings_usd:.6f} ({t.savings_pct:.1f}%)")
    if not report.teams:
        print("no usage recorded")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="database URL (default: $TIERSERVE_DB_URL, else .tierserve/keys.db)")
    p.add_argument("--profile", default="local-cpu", help="configs/ profile (tiers and prices)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_keys_commands(sub) -> None:
    keys = sub.add_parser("keys", help="virtual keys for teams").add_subparsers(dest="keys_cmd",
                                                                                required=True)
    create = keys.add_parser("create", help="create a key (shown once)")
    create.add_argument("--team", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--tiers", help="comma-separated tiers the key may use (default: all)")
    create.add_argument("--no-pin", action="store_true",
                        help="the key may not choose its tier (model, x-tierserve-tier, reasoning_effort)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute (prompt + completion)")
    create.add_argument("--max-concurrent", type=int)
    budget = create.add_mutually_exclusive_group()
    budget.add_argument("--budget-tokens", type=int, help="tokens per --period")
    budget.add_argument("--budget-usd", type=float, help="USD per --period (tier cost_per_1k_tokens)")
    create.add_argument("--period", choices=["day", "month"], default="month")
    create.add_argument("--expires", help="e.g. 30d, 2026-01-31 or an ISO time")
    _common(create)
    create.set_defaults(func=cmd_keys_create)
    lst = keys.add_parser("list", help="list keys (no secrets)")
    lst.add_argument("--team")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    _common(lst)
    lst.set_defaults(func=cmd_keys_list)
    for name, fn, text in (("show", cmd_keys_show, "show one key"),
                           ("revoke", cmd_keys_revoke, "revoke a key"),
                           ("rotate", cmd_keys_rotate, "new secret for a key, same limits")):
        p = keys.add_parser(name, help=text)
        p.add_argument("key", help="key id (key_…) or its display prefix (tsk-…)")
        _common(p)
        p.set_defaults(func=fn)

    usage = sub.add_parser("usage", help="requests, tokens, cost and routing savings per team and key")
    usage.add_argument("--team")
    usage.add_argument("--since", help="e.g. 24h, 7d, 2026-01-01")
    _common(usage)
    usage.set_defaults(func=cmd_usage)

"""`tierserve k8s ...`: render, validate, suspend and resume (argparse; wired in tooling/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.config import ConfigError
from tooling.k8s import cost
from tooling.k8s.render import (
    DEFAULT_NAMESPACE,
    DEFAULT_PROFILE,
    DEFAULT_RELEASE,
    VALUES_DIR,
    Rendered,
    RenderError,
    merge_values,
    render,
    write_out,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--values", "-f", action="append", type=Path, default=[], metavar="FILE",
                   help="values file (repeatable, merged left to right like helm -f)")
    p.add_argument("--set", action="append", default=[], dest="set_values", metavar="KEY=VAL",
                   help="value override in helm --set syntax (repeatable)")
    p.add_argument("--profile", default=None,
                   help=f"configs/ profile (default: the values' `profile`, else {DEFAULT_PROFILE})")
    p.add_argument("--release", default=DEFAULT_RELEASE)
    p.add_argument("--namespace", "-n", default=DEFAULT_NAMESPACE)


def _set_values(expressions: list[str]) -> dict[str, Any]:
    import helm_python as helm  # Helm's own --set parser

    merged: dict[str, Any] = {}
    for expr in expressions:
        try:
            merged = merge_values(merged, helm.parse_set_string(expr))
        except helm.HelmValuesError as exc:
            raise RenderError(f"--set {expr}: {exc}") from None
    return merged


def _render(args: argparse.Namespace, values: list[Path] | None = None) -> Rendered:
    rendered = render(values if values is not None else args.values, profile=args.profile,
                      extra_values=_set_values(args.set_values),
                      release=args.release, namespace=args.namespace)
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return rendered


def cmd_render(args: argparse.Namespace) -> int:
    try:
        rendered = _render(args)
    except (RenderError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        for path in write_out(rendered, args.out):
            print(path)
    else:
        for rel, text in sorted(rendered.manifests.items()):
            if rel.endswith(".yaml") and text.strip():
                print(f"---\n# Source: {rel}\n{text.strip()}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from tooling.k8s.validate import validate_rendered  # pulls in jsonschema and the CRDs

    sets = [[f] for f in sorted(VALUES_DIR.glob("*.yaml"))] if args.examples else [args.values]
    failed = 0
    for files in sets:
        label = ", ".join(str(f) for f in files) or "chart defaults"
        try:
            report = validate_rendered(_render(args, files), lint=not args.no_lint)
        except (RenderError, ConfigError) as exc:
            print(f"FAIL {label}: {exc}")
            failed += 1
            continue
        for line in report.skipped if args.verbose else []:
            print(f"  skipped {line}")
        for line in report.errors:
            print(f"  error {line}")
        print(f"{'ok' if report.ok else 'FAIL'} {label}: {len(report.passed)} objects valid, "
              f"{len(report.errors)} errors, {len(report.skipped)} CEL rules skipped")
        failed += not report.ok
    return 1 if failed else 0


def _suspend(args: argparse.Namespace, suspend: bool) -> int:
    try:
        rendered = _render(args)
    except (RenderError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    known = [t["name"] for t in rendered.values["generated"]["tiers"]]
    tiers = args.tiers.split(",") if args.tiers else known
    unknown = sorted(set(tiers) - set(known))
    if unknown:
        print(f"error: unknown tiers {unknown}; tiers are {known}", file=sys.stderr)
        return 2
    if args.method == "helm":
        cmds = cost.helm_commands(args.release, args.namespace, tiers, suspend)
    else:
        cmds = cost.kubectl_commands(rendered, args.namespace, tiers, suspend)
    return cost.run(cmds, args.dry_run)


def add_k8s_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `k8s` with its subcommands; each sets `func(args) -> int`."""
    k8s = subparsers.add_parser("k8s", help="Kubernetes (KubeRay) deployment")
    sub = k8s.add_subparsers(dest="k8s_command", required=True)

    p = sub.add_parser("render", help="render the Helm chart offline (serveConfigV2 from configs/)")
    _common(p)
    p.add_argument("--out", type=Path, help="write manifests and values.generated.yaml here")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("validate", help="lint, schema-check and cross-check the rendered chart")
    _common(p)
    p.add_argument("--examples", action="store_true", help="validate every kuberay/values/*.yaml")
    p.add_argument("--no-lint", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true", help="list skipped CEL rules")
    p.set_defaults(func=cmd_validate)

    for name, suspend in (("suspend", True), ("resume", False)):
        p = sub.add_parser(name, help=f"{name} GPU tiers (worker groups to zero and back)")
        _common(p)
        p.add_argument("--tiers", help="comma-separated tiers (default: all)")
        p.add_argument("--method", choices=["helm", "kubectl"], default="helm")
        p.add_argument("--dry-run", action="store_true", help="print the commands only")
        p.set_defaults(func=lambda a, s=suspend: _suspend(a, s))
    return k8s


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m tooling.k8s.cli k8s render`), until tooling/cli.py wires it."""
    parser = argparse.ArgumentParser(prog="tierserve")
    add_k8s_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""`tierserve route-train | route-eval | route-explain`: the router's offline commands.

`tooling/cli.py` wires these in with `add_routing_commands(subparsers)`; each
command's `func` takes the parsed Namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from app.config.loader import REPO_ROOT, load_config, source_of
from app.config.schema import TierserveConfig
from app.routing.scorer import load_scorer
from tooling.routing.training.data import DEFAULT_DATA_DIR

ARTIFACTS = REPO_ROOT / "app" / "routing" / "artifacts"
HAND_ARTIFACT = ARTIFACTS / "complexity.json"
EMBED_ARTIFACT = ARTIFACTS / "complexity_embed.json"
EMBED_GAIN_ARTIFACT = ARTIFACTS / "complexity_embed_gain.json"


def _configured_artifact(profile: str = "local-cpu") -> Path:
    """The artifact configs/routing.yaml selects (`learned.artifact`): the live scorer."""
    return REPO_ROOT / load_config(profile).routing.learned.artifact


def _configured_objective(profile: str) -> str:
    """The objective the live scorer was trained for, so retraining (from feedback too) makes
    the same kind of scorer; `needs-strong` for artifacts that predate objectives."""
    return str(load_scorer(_configured_artifact(profile)).meta.get("objective", "needs-strong"))


def _shares(args: argparse.Namespace, config: TierserveConfig) -> list[float]:
    """Target shares in ladder order: --target-shares, else the profile's `target_shares`,
    else (two tiers) --target-reasoning-share."""
    ladder = config.routing.ladder
    if args.target_shares:
        shares = [float(v) for v in args.target_shares.split(",")]
        if len(shares) != len(ladder):
            raise SystemExit(f"--target-shares needs {len(ladder)} numbers for the ladder {ladder}")
        return shares
    if config.routing.target_shares:
        return config.routing.shares()
    if len(ladder) != 2:
        raise SystemExit(f"the ladder {ladder} has {len(ladder)} tiers: give --target-shares "
                         "or set routing.target_shares")
    return [1 - args.target_reasoning_share, args.target_reasoning_share]


def _train(args: argparse.Namespace) -> int:
    from tooling.routing.training.calibrate import calibrate, write_thresholds
    from tooling.routing.training.data import load_rows, split_rows
    from tooling.routing.training.train import HELDOUT_SHARE

    config = load_config(args.profile)
    shares = _shares(args, config)
    scorer, out = None, _configured_artifact(args.profile)
    if not args.calibrate_only:
        objective = args.objective or (
            _configured_objective(args.profile) if args.scorer == "embedding" else "needs-strong")
        if args.scorer == "embedding":
            from tooling.routing.training.train_embed import train
            out = args.out or (EMBED_GAIN_ARTIFACT if objective == "gain" else EMBED_ARTIFACT)
        else:
            from tooling.routing.training.train import train  # type: ignore[assignment]
            out = args.out or HAND_ARTIFACT
        # Labelled traffic (`--from-feedback`, wired in by tooling/routeops): more training rows.
        extra = getattr(args, "feedback_rows", None)
        if extra is not None and args.scorer != "embedding":
            raise SystemExit("--from-feedback trains the embedding scorer (--scorer embedding)")
        kwargs: dict = {"extra": extra} if extra is not None else {}
        if args.scorer == "embedding":
            kwargs["objective"] = objective
        elif objective != "needs-strong":
            raise SystemExit("--objective gain is a recipe of the embedding scorer")
        result = train(args.data, seed=args.seed, strong_share=shares[-1] / sum(shares), **kwargs)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.scorer.dumps())
        scorer = load_scorer(out)
        meta = result.scorer.meta
        l2 = {k: v for k, v in meta.items() if k.startswith("l2")}
        print(f"wrote {out} ({l2}, n_train={meta['n_train']}, "
              f"validation APGR by l2: {meta['validation_apgr']})")
    # Reference sample: the training prompts, routed by the whole pipeline (rules included).
    prompts = [r.prompt for r in split_rows(load_rows(args.data), HELDOUT_SHARE, args.seed).train]
    cal = calibrate(config, prompts, shares, scorer)
    print(f"thresholds: {cal.thresholds} over {config.routing.ladder} "
          f"({cal.pinned_share:.1%} of {len(prompts)} reference prompts pinned by rules)")
    if cal.cost_target is not None:
        print(f"  cost-budget picker: starts at this threshold, then holds {cal.cost_target:.0%} of "
              f"all-{config.routing.strong_tier} priced cost over recent traffic")
    for tier in config.routing.ladder:
        print(f"  {tier:12s} target {cal.target[tier]:6.1%}  calibrated {cal.achieved[tier]:6.1%}")
    if args.write_config:
        path = Path(source_of(args.profile, ("routing", "thresholds")))
        if _configured_artifact(args.profile).resolve() != out.resolve():
            print(f"not writing thresholds: profile {args.profile} selects "
                  f"{_configured_artifact(args.profile)}, not {out}; set `learned.artifact` first",
                  file=sys.stderr)
            return 2
        write_thresholds(path, cal.thresholds)
        print(f"updated thresholds in {path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tooling.routing.training.evaluate import evaluate, heldout_rows, plot

    if args.tiering:
        return _tiering(args)
    if args.kfold:
        return _kfold(args)
    scorer = load_scorer(args.artifact or _configured_artifact(args.profile))
    rows = heldout_rows(args.data, scorer)
    if not rows:
        print(f"{args.data}: every prompt was used in training; nothing to evaluate", file=sys.stderr)
        return 2
    report = evaluate(rows, scorer, args.profile)
    if args.plot:
        plot(report, rows, args.plot)
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    for key, value in report.as_json().items():
        print(f"{key:12s} {value}")
    for source, apgr in report.per_source.items():
        print(f"apgr[{source}] {apgr:.4f}")
    return 0


def _kfold(args: argparse.Namespace) -> int:
    from tooling.routing.training.kfold import kfold, summary

    table = summary(kfold(args.data, args.kfold, args.seed))
    if args.json:
        print(json.dumps(table))
        return 0
    print(f"k-fold by subject (k={args.kfold}, seed={args.seed}), mean over folds")
    print(f"{'recipe':15s} {'APGR':>7s} {'±sd':>6s} {'CPT50':>7s} {'MMLU':>7s} {'GSM8K':>7s}")
    for name, r in table.items():
        print(f"{name:15s} {r['apgr']:7.4f} {r['apgr_sd']:6.3f} {r['cpt50']:7.1%} "
              f"{r['apgr_mmlu']:7.4f} {r['apgr_gsm8k']:7.4f}")
    return 0


def _tiering(args: argparse.Namespace) -> int:
    import numpy as np

    from tooling.routing.training import tiering

    config = load_config(args.profile)
    if args.cost_ladder:
        config = tiering.with_cost_ladder(config, *args.cost_ladder)
    scorer = load_scorer(args.artifact or _configured_artifact(args.profile))
    if args.kfold:  # every dev prompt, scored by a fold model that never saw its subject
        from tooling.routing.training.data import load_rows
        from tooling.routing.training.kfold import out_of_fold_scores

        p = tiering.priced(config, load_rows(args.data))
        oof = out_of_fold_scores(p.rows, args.kfold, args.seed)
        split = f"all {len(p.rows)} dev prompts, {args.kfold}-fold out-of-fold embedding-gain scores"
    else:
        p, oof = tiering.heldout_priced(config, args.data, scorer), None
        split = f"{len(p.rows)} held-out prompts"
    if not p.rows:
        print(f"{args.data}: no held-out prompt fits the weak tier", file=sys.stderr)
        return 2
    routed = tiering.route(config, [r.prompt for r in p.rows], scorer, scores=oof, seed=args.seed)
    if args.threshold is None:  # as configured: the thresholds the pipeline used, averaged
        shipped = tiering.outcome(p, routed.went_up, float(np.nanmean(routed.used)))
    else:
        shipped = tiering.outcome(p, routed.up(args.threshold), args.threshold)
    best = tiering.cheapest_at(tiering.frontier(p, routed), args.target_accuracy)
    sweep = tiering.sweep(p, routed)
    if args.json:
        as_dict = lambda o: o and {k: round(v, 6) if v is not None else None  # noqa: E731
                                    for k, v in vars(o).items()}
        print(json.dumps({"n": len(p.rows), "split": split, "picker": _picker_name(config),
                          "configured": as_dict(shipped), "cheapest_at_target": as_dict(best),
                          "sweep": [as_dict(o) for o in sweep]}))
        return 0
    print(f"tiering on {split} that fit {config.routing.weak_tier}'s context "
          f"(profile {args.profile}, picker {_picker_name(config)}, {tiering.ANSWER_TOKENS} "
          f"answer tokens; relative to all {config.routing.strong_tier})")
    print(f"{'':24s} {'threshold':>9s} {'to strong':>9s} {'accuracy':>9s} {'priced cost':>11s}")

    def line(name: str, o) -> None:
        print(f"{name:24s} {o.threshold:9.5f} {o.to_strong:9.1%} {o.rel_accuracy:9.1%} {o.rel_cost:11.1%}")
    line("configured", shipped)
    if best is not None:
        line(f"cheapest at {args.target_accuracy:.0%}", best)
    else:
        print(f"cheapest at {args.target_accuracy:.0%}: no threshold reaches it")
    for o in sweep:
        line("sweep", o)
    return 0


def _picker_name(config: TierserveConfig) -> str:
    picker = config.routing.plugins.picker if config.routing.plugins else None
    if picker is None:
        return "ladder"
    params = ", ".join(f"{k}={v}" for k, v in picker.params.items())
    return f"{picker.name}({params})" if params else picker.name


def _explain(args: argparse.Namespace) -> int:
    from app.protocol.internal import RouteRequest
    from app.routing.assemble import build_pipeline

    scorer = load_scorer(args.artifact) if args.artifact else None
    pipeline = build_pipeline(load_config(args.profile), scorer=scorer)
    req = RouteRequest(request_id="explain", endpoint="chat", model=args.model,
                       prompt_text=args.prompt, tier_header=args.tier_header,
                       reasoning_effort=args.reasoning_effort, user=args.user, team=args.team)
    decision = asyncio.run(pipeline.decide(req))
    if args.json:
        print(decision.model_dump_json())
        return 0
    print(f"tier {decision.tier}  reason {decision.reason}  score {decision.score}  "
          f"thresholds {decision.thresholds}  scorer {decision.scorer_version}  "
          f"{decision.decision_ms:.3f} ms")
    for c in decision.contributions:
        print(f"  {c.kind:8s} {c.plugin:24s} {c.outcome:40s} {c.ms:7.3f} ms")
    print(f"  fallbacks {decision.fallbacks or 'none'}")
    return 0


def add_routing_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("route-train",
                              help="train the complexity scorer and calibrate the ladder thresholds")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--scorer", choices=["embedding", "hand-features"], default="embedding",
                   help="embedding: v2 (wordllama vectors + hand features); hand-features: v1")
    p.add_argument("--objective", choices=["needs-strong", "gain"], default=None,
                   help="embedding scorer: needs-strong (P(only the strong model is right)) or gain "
                        "(that minus P(only the weak one is right), the expected gain of going up); "
                        "default: the objective of the scorer the profile runs")
    p.add_argument("--out", type=Path, help="default: the scorer's artifact in app/routing/artifacts/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="local-cpu", help="whose ladder and policy to calibrate")
    p.add_argument("--target-shares", metavar="A,B,...",
                   help="share per ladder tier, cheapest first (e.g. 60,30,10); default: the "
                        "profile's routing.target_shares")
    p.add_argument("--target-reasoning-share", type=float, default=0.3,
                   help="two tiers without target_shares: share of a reference sample (the "
                        "training prompts) sent to the strong tier")
    p.add_argument("--calibrate-only", action="store_true",
                   help="keep the configured artifact; only calibrate the thresholds")
    p.add_argument("--write-config", action="store_true",
                   help="write the calibrated thresholds into the file that sets them")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("route-eval", help="RouteLLM metrics on prompts the scorer never saw")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--artifact", type=Path, help="default: the one configs/routing.yaml selects")
    p.add_argument("--profile", default="local-cpu", help="config whose pipeline is timed")
    p.add_argument("--kfold", type=int, metavar="K",
                   help="instead: retrain both recipes in K folds by subject and compare")
    p.add_argument("--seed", type=int, default=0, help="k-fold assignment seed")
    p.add_argument("--tiering", action="store_true",
                   help="instead: the profile's two-tier policy on the held-out prompts that fit the "
                        "weak tier: share to the strong tier by count, accuracy and priced cost "
                        "relative to all-strong, at the configured threshold and a sweep")
    p.add_argument("--target-accuracy", type=float, default=0.95,
                   help="--tiering: also show the cheapest threshold keeping this relative accuracy")
    p.add_argument("--threshold", type=float,
                   help="--tiering: compare the picker's key with this instead of the profile's threshold")
    p.add_argument("--cost-ladder", nargs=2, type=float, metavar=("E", "POWER"),
                   help="--tiering: instead of the profile's picker, the cost-ladder one with "
                        "completion_tokens E and length_power POWER (key = score*(E/(tokens+E))^POWER)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, help="write the router-vs-random plot to this PNG")
    p.set_defaults(func=_eval)

    p = subparsers.add_parser("route-explain", help="print the routing decision for a prompt")
    p.add_argument("prompt")
    p.add_argument("--profile", default="local-cpu")
    p.add_argument("--artifact", type=Path, help="default: the one configs/routing.yaml selects")
    p.add_argument("--model", default="auto")
    p.add_argument("--tier-header", help="as if sent with x-tierserve-tier")
    p.add_argument("--reasoning-effort", choices=["minimal", "low", "medium", "high"])
    p.add_argument("--user", help="OpenAI's `user` field")
    p.add_argument("--team", help="as if sent with a key of this team")
    p.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    p.set_defaults(func=_explain)

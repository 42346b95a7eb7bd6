"""`tierserve models push|pull|list|verify`: tooling around app/models/sources.py."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from app.models.cache import ModelCache, read_entry
from app.models.manifest import MANIFEST_NAME, VerificationError, read_manifest, verify_dir


def _settings(args: argparse.Namespace):
    from app.models.s3 import TransferSettings

    return TransferSettings(max_workers=args.workers, chunk_bytes=int(args.chunk_mb * (1 << 20)))


def _progress(args: argparse.Namespace):
    from app.models.progress import LogProgress, NoProgress, TqdmProgress

    if args.quiet:
        return NoProgress()
    return TqdmProgress() if sys.stderr.isatty() else LogProgress(every_s=2)


def cmd_push(args: argparse.Namespace) -> int:
    from app.models import s3

    manifest = s3.push(Path(args.dir), args.uri, settings=_settings(args), progress=_progress(args),
                       create_bucket=args.create_bucket)
    print(f"pushed {len(manifest.files)} files ({manifest.total_bytes / 1e6:.1f} MB) to {args.uri}, "
          f"version {manifest.version}; manifest {args.uri.rstrip('/')}/{MANIFEST_NAME}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from app.models.sources import resolve

    got = resolve(args.source, cache=ModelCache(args.cache), progress=_progress(args),
                  settings=_settings(args))
    if args.json:
        print(got.model_dump_json())
    elif got.kind.value == "local":
        print(f"{got.source}: a local directory, used as it is: {got.path}")
    elif got.cache_hit:
        print(f"{got.source}: in the cache ({got.kind.value}, {got.seconds * 1000:.0f} ms): {got.path}")
    else:
        resumed = f", {got.resumed_bytes / 1e6:.1f} MB resumed" if got.resumed_bytes else ""
        print(f"{got.source}: pulled {got.fetched_bytes / 1e6:.1f} MB in {got.seconds:.2f}s "
              f"({got.mb_per_s:.1f} MB/s{resumed}), verified: {got.path}")
    return 0


def _tiers_by_source() -> dict[str, list[str]]:
    from app.config.loader import ConfigError, list_profiles, load_config

    used: dict[str, list[str]] = {}
    for profile in list_profiles():
        try:
            config = load_config(profile)
        except ConfigError:
            continue
        for tier in config.tiers:
            used.setdefault(tier.model_source.rstrip("/"), []).append(f"{profile}/{tier.name}")
    return used


def cmd_list(args: argparse.Namespace) -> int:
    from app.models.hf import hub_cache_dir

    cache, used = ModelCache(args.cache), _tiers_by_source()
    rows = [{"source": e.source, "version": e.version, "mb": round(e.total_bytes / 1e6, 1),
             "files": e.files, "pulled_at": e.pulled_at, "path": e.path,
             "tiers": used.get(e.source, [])} for e in cache.entries()]
    hf_rows = []
    hub = hub_cache_dir()
    if hub.is_dir():
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir(hub).repos:
            if repo.repo_type == "model":
                hf_rows.append({"source": repo.repo_id, "mb": round(repo.size_on_disk / 1e6, 1),
                                "revisions": len(repo.revisions), "path": str(repo.repo_path),
                                "tiers": used.get(repo.repo_id, [])})
    partial = cache.staging_bytes()
    if args.json:
        print(json.dumps({"cache": str(cache.root), "models": rows, "huggingface_cache": str(hub),
                          "huggingface": hf_rows, "partial_downloads": partial}, indent=2))
        return 0
    print(f"Tierserve model cache: {cache.root}")
    for r in rows:
        print(f"  {r['source']}  version {r['version']}  {r['mb']} MB  {r['files']} files  "
              f"pulled {r['pulled_at']}  tiers: {', '.join(r['tiers']) or '-'}")
    if not rows:
        print("  (empty)")
    for name, size in partial.items():
        print(f"  partial download {name}: {size / 1e6:.1f} MB on disk (resumes on the next pull)")
    print(f"Hugging Face cache: {hub}")
    for r in hf_rows:
        print(f"  {r['source']}  {r['mb']} MB  {r['revisions']} revision(s)  "
              f"tiers: {', '.join(r['tiers']) or '-'}")
    if not hf_rows:
        print("  (empty)")
    return 0


def _targets(args: argparse.Namespace, cache: ModelCache) -> list[Path]:
    if not args.targets:
        return [Path(e.path) for e in cache.entries()]
    found: list[Path] = []
    for target in args.targets:
        if Path(target).is_dir():
            found.append(Path(target))
            continue
        mine = [Path(e.path) for e in cache.entries() if e.source == target.rstrip("/")]
        if not mine:
            raise VerificationError(f"{target}: not a directory and not in the cache at {cache.root}; "
                                    f"pull it first (`tierserve models pull {target}`)")
        found += mine
    return found


def cmd_verify(args: argparse.Namespace) -> int:
    cache = ModelCache(args.cache)
    targets, failed = _targets(args, cache), 0
    for path in targets:
        entry = read_entry(path)
        what = f"{entry.source}@{entry.version}" if entry else str(path)
        if not (path / MANIFEST_NAME).is_file():
            print(f"FAIL {what}: no {MANIFEST_NAME} in {path} (push writes one; "
                  f"`tierserve models push {path} s3://…`)")
            failed += 1
            continue
        problems = verify_dir(path, read_manifest(path / MANIFEST_NAME), what=what)
        if problems:
            failed += 1
            print(f"FAIL {what} ({path}):")
            for p in problems:
                print(f"  {p}")
            print(f"  fix: delete {path} and pull the model again")
        else:
            print(f"ok   {what} ({path})")
    if not targets:
        print(f"nothing to verify: the cache at {cache.root} is empty")
    return 1 if failed else 0


def _run(func):
    def wrapped(args: argparse.Namespace) -> int:
        from app.models.hf import HFError
        from app.models.s3 import S3Error
        from app.models.sources import ModelSourceError

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("botocore").setLevel(logging.WARNING)
        try:
            return func(args)
        except (S3Error, HFError, ModelSourceError, VerificationError) as exc:
            print(f"tierserve: {exc}", file=sys.stderr)
            return 1
    return wrapped


def add_model_commands(models: argparse._SubParsersAction) -> None:
    """Add push/pull/list/verify to the `tierserve models` group."""
    def transfer_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=int, default=8, help="parallel transfers (default 8)")
        p.add_argument("--chunk-mb", type=float, default=64, help="MiB per part/range (default 64)")
        p.add_argument("--quiet", action="store_true", help="no progress output")

    def cache_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cache", type=Path, default=None,
                       help="model cache dir (default $TIERSERVE_MODEL_CACHE or ~/.cache/tierserve/models)")

    push = models.add_parser("push", help="upload a model dir to s3://bucket/prefix with a sha256 manifest")
    push.add_argument("dir")
    push.add_argument("uri", help="s3://bucket/prefix")
    push.add_argument("--create-bucket", action="store_true", help="create the bucket if missing")
    transfer_opts(push)
    push.set_defaults(func=_run(cmd_push))

    pull = models.add_parser("pull", help="fetch a model (s3:// or Hugging Face id) into the cache")
    pull.add_argument("source")
    pull.add_argument("--json", action="store_true", help="print the result as JSON")
    transfer_opts(pull)
    cache_opt(pull)
    pull.set_defaults(func=_run(cmd_pull))

    ls = models.add_parser("list", help="cached models, their sizes and the tiers that use them")
    ls.add_argument("--json", action="store_true")
    cache_opt(ls)
    ls.set_defaults(func=_run(cmd_list))

    verify = models.add_parser("verify", help="re-check cached models (or dirs) against their manifests")
    verify.add_argument("targets", nargs="*", help="cache sources or model dirs (default: the whole cache)")
    cache_opt(verify)
    verify.set_defaults(func=_run(cmd_verify))

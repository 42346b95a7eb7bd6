"""Night off / resume: scale the GPU tiers' worker groups to zero and back.

Through Helm (the default) the change is one value, `tiers.<name>.suspend`, on top of the
release's stored values (`--reuse-values`), so serveConfigV2, images and every other setting
stay as they were and `resume` needs nothing remembered. The kubectl form patches the live
RayService for clusters not managed by this chart's release; resume restores the min/max
the chart would render.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from typing import Any

import yaml

from tooling.k8s.render import CHART_DIR, Rendered, serve_config_doc


def helm_commands(release: str, namespace: str, tiers: list[str], suspend: bool,
                  chart: str = str(CHART_DIR)) -> list[list[str]]:
    sets = [arg for t in tiers for arg in ("--set", f"tiers.{t}.suspend={str(suspend).lower()}")]
    return [["helm", "upgrade", release, chart, "--namespace", namespace, "--reuse-values", *sets]]


def kubectl_commands(rendered: Rendered, namespace: str, tiers: list[str],
                     suspend: bool) -> list[list[str]]:
    """One JSON patch: each tier's worker group, and serveConfigV2 with the scale-to-zero
    override of the tiers given (on resume: none). Indexes come from the rendered RayService;
    the tiers named are taken as the whole suspended set."""
    rs = next(o for o in rendered.objects if o["kind"] == "RayService")
    groups = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    plans = {t["name"]: t for t in rendered.values["generated"]["tiers"]}
    ops: list[dict[str, Any]] = []
    for tier in tiers:
        index = next(i for i, g in enumerate(groups) if g["groupName"] == plans[tier]["groupName"])
        lo, hi = (0, 0) if suspend else (groups[index]["minReplicas"], groups[index]["maxReplicas"])
        base = f"/spec/rayClusterConfig/workerGroupSpecs/{index}"
        ops += [{"op": "replace", "path": f"{base}/{k}", "value": v}
                for k, v in (("minReplicas", lo), ("maxReplicas", hi), ("replicas", lo))]
    serve = serve_config_doc(rendered.config, frozenset(tiers) if suspend else frozenset())
    ops.append({"op": "replace", "path": "/spec/serveConfigV2",
                "value": yaml.safe_dump(serve, sort_keys=False)})
    name = rs["metadata"]["name"]
    return [["kubectl", "--namespace", namespace, "patch", "rayservice", name, "--type=json",
             "-p", json.dumps(ops)]]


def run(commands: list[list[str]], dry_run: bool) -> int:
    """Print each command; run it unless dry_run. A missing tool is an error, not a skip."""
    for cmd in commands:
        print(shlex.join(cmd))
        if dry_run:
            continue
        if shutil.which(cmd[0]) is None:
            print(f"error: {cmd[0]} not found on PATH; run the command above yourself "
                  f"(or pass --dry-run)")
            return 127
        code = subprocess.run(cmd, check=False).returncode
        if code:
            return code
    return 0

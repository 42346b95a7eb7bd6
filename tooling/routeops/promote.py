"""`tierserve route-promote ARTIFACT`: make a candidate scorer live (or the shadow), rolling.

Edits `learned.artifact` (or `learned.shadow_artifact`) in the file that sets it, keeping
comments and layout; re-renders the Serve config; optionally `serve deploy`s it. Only
live routing settings change (app/config/live.py): the app's digest stays the same, so
Serve applies the router's new user_config in place (its `reconfigure`) and restarts no
replica, tiers included.
"""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK = re.compile(r"^(?P<indent>[ \t]*)learned:[ \t]*(#.*)?$", re.M)


def set_learned(path: Path, key: str, value: str | None) -> None:
    """Set (or, with None, remove) `key` inside the `learned:` block of a YAML file."""
    text = path.read_text()
    block = _BLOCK.search(text)
    if block is None:
        if value is None:
            return
        raise ValueError(f"{path}: no `learned:` block to set {key} in")
    indent = len(block.group("indent"))
    lines = text[block.end():].split("\n")[1:]
    start = block.end() + 1
    child_indent = None
    offset = start
    for line in lines:  # the block's own lines: more indented than `learned:`, or blank
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped and depth <= indent:
            break
        if stripped and child_indent is None:
            child_indent = depth
        match = re.match(rf"^[ \t]*{re.escape(key)}:", line)
        if match and depth == child_indent:
            new = "" if value is None else f"{line[:depth]}{key}: {value}\n"
            path.write_text(text[:offset] + new + text[offset + len(line) + 1:])
            return
        offset += len(line) + 1
    if value is None:
        return
    pad = " " * (child_indent if child_indent is not None else indent + 2)
    path.write_text(text[:start] + f"{pad}{key}: {value}\n" + text[start:])


def how_it_travels(value: str) -> str:
    """How the promoted artifact reaches router replicas (app/config/live_artifacts.py)."""
    from app.config.live_artifacts import carry, is_shipped

    artifact = carry(value)
    if is_shipped(value):
        return (f"{value} is a shipped artifact: the router's user_config names it with its sha256 "
                f"({artifact.sha256[:12]}) and each router replica checks its own node's copy "
                "against it (an install or image with another version refuses it)")
    assert artifact.content is not None
    return (f"the router's user_config carries {value} whole ({len(artifact.content) / 1024:.0f} KiB, "
            f"sha256 {artifact.sha256[:12]}): router replicas on any node load it from there")


def kuberay_steps(profile: str, values: list[Path], out: Path | None, shipped: bool) -> str:
    """What a RayService needs after a promotion: the chart's values re-rendered (serveConfigV2
    holds the router's user_config) and a `helm upgrade`. KubeRay applies a changed serveConfigV2
    to the running cluster in place, and the app's config digest leaves the live routing settings
    out, so the image stays, unless it lacks this version of a shipped artifact."""
    f = "".join(f" -f {v}" for v in values) or " -f kuberay/values/YOUR.yaml"
    render = "" if out else f"  tierserve k8s render --profile {profile}{f} --out DIR\n"
    generated = out / "values.generated.yaml" if out else "DIR/values.generated.yaml"
    image = ("the image must hold this version of the shipped artifact (else the router refuses "
             "it); promote a copy from outside app/routing/artifacts/ to carry it instead"
             if shipped else "no image rebuild")
    return ("KubeRay (RayService): serveConfigV2 holds the router's user_config, so\n" + render
            + f"  helm upgrade --install tierserve kuberay/chart -n tierserve{f} -f {generated}\n"
            f"(with your --set flags). KubeRay hands the new serveConfigV2 to the running cluster: "
            f"a router reconfigure, no pod restart; {image}.")

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

"""Exercise progress, kept in a small JSON file in the user's data directory.

    >>> record("02", "rmsnorm")        # called by qwqlearn.check when an exercise passes
    >>> print(table())                 # per-chapter summary (`qwqlearn progress`)

The file lives outside the repository (platformdirs' user data dir, or
$QWQLEARN_PROGRESS if set). A corrupt or unreadable file is reported, moved
aside and recreated: progress tracking must never break a notebook.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# chapter -> exercises it contains (the checkers in qwqlearn.check register here)
EXERCISES: dict[str, list[str]] = {}


def progress_file() -> Path:
    env = os.environ.get("QWQLEARN_PROGRESS")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("qwqlearn", appauthor=False)) / "progress.json"


def load() -> dict:
    path = progress_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        return data
    except (OSError, ValueError) as e:
        backup = path.with_suffix(f".corrupt-{int(time.time())}.json")
        try:
            path.replace(backup)
            where = f"moved to {backup}"
        except OSError:
            where = "left in place"
        print(f"qwqlearn: progress file {path} was unreadable ({e}); {where}, starting afresh", file=sys.stderr)
        return {}


def record(chapter: str, exercise: str) -> None:
    """Mark an exercise as passed. Never raises: a read-only disk just means no record."""
    data = load()
    data.setdefault(chapter, {})[exercise] = time.strftime("%Y-%m-%d %H:%M")
    path = progress_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: a crash never leaves half a file
    except OSError as e:
        print(f"qwqlearn: could not save progress to {path}: {e}", file=sys.stderr)


def table() -> str:
    data = load()
    lines = [f"{'chapter':<8} {'done':>5}  exercises", "-" * 48]
    for chapter, names in sorted(EXERCISES.items()):
        done = data.get(chapter, {})
        marks = ", ".join(("✓ " if n in done else "· ") + n for n in names)
        lines.append(f"{chapter:<8} {sum(n in done for n in names)}/{len(names):<3}  {marks}")
    return "\n".join(lines + [f"(stored in {progress_file()})"])

"""A nurture project on disk: what ``nurture init`` writes, and the examples shipped with the package.

The examples (campaign YAML, their templates, the base layout) are package data under
``nurture/examples/`` in a built wheel; in a source checkout they are the repository's own
top-level ``campaigns/`` and ``templates/`` folders, the one copy that is edited.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def new_secret() -> bytes:
    """A fresh random signing secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32).encode()


def write_secret(path: Path, secret: bytes) -> Path:
    """Write ``secret`` to ``path`` readable by its owner only (mode 0600, folder 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, secret + b"\n")
    finally:
        os.close(fd)
    return path

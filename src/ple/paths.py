"""Output paths a user names: refused in one line before any work when they cannot be made."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ple.errors import UserError


def check_writable_dir(path: Path, what: str) -> None:
    """Refuse a directory that cannot be created or written, without leaving anything behind.

    Permissions alone cannot tell (root may write anywhere by mode bits, yet not under
    /proc), so a scratch directory is made and removed in the nearest existing ancestor.
    """
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what} {path}: cannot be created ({ancestor} is not a directory)")
    try:
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".ple-write-check-"))
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write in {ancestor} ({e.strerror})") from None

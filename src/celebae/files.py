"""Reading files a user hands over: only regular files, bounded in size, JSON of any shape as one line.

A FIFO, a device or a socket named where a file belongs would block or never end; a config of a
million nested brackets would exhaust the parser's recursion. Every JSON file celebae reads (configs,
summaries, a sweep's record, a model folder) goes through ``read_json``; every other file it opens from
a path it was given is checked by ``regular_file`` first.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import CelebaeError

MAX_JSON_BYTES = 64 << 20  # celebae's own JSON files are kilobytes; a metrics record a few MB at most


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (links followed); FileNotFoundError if it is missing, else a one-line
    error naming it (a FIFO would block every reader, a folder or device is not a file)."""
    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise CelebaeError(f"{what} {path} is {kind}; replace it with the file itself")
    return path


def read_json(path: str | Path, what: str = "file", kind: type = dict) -> Any:
    """A JSON file's value, which must be a ``kind`` (a dict by default); a missing, non-regular, oversized or
    malformed file is one line naming it (the caller catches FileNotFoundError where absence is fine)."""
    path = regular_file(path, what)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        mib = size / 2**20
        raise CelebaeError(f"{what} {path} is {mib:.0f} MiB, too large for celebae's JSON; is it the right file?")
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0]
        raise CelebaeError(f"{what} {path} is not valid JSON ({reason}); write it again or remove it") from None
    if not isinstance(value, kind):
        raise CelebaeError(f"{what} {path} holds a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def read_json_if_any(path: str | Path, what: str = "file", absent: Any = None) -> Any:
    """``read_json``, or ``absent`` where the file does not exist (a record not written yet)."""
    try:
        return read_json(path, what)
    except FileNotFoundError:
        return absent


def parse_json(text: str | bytes, what: str, kind: type = dict) -> Any:
    """JSON text (a checkpoint's metadata field) as a ``kind``, or a one-line error naming ``what``."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError, TypeError):
        raise CelebaeError(f"{what} is not valid JSON; the file is damaged") from None
    if not isinstance(value, kind):
        raise CelebaeError(f"{what} holds a JSON {type(value).__name__}, not a {kind.__name__}; the file is damaged")
    return value

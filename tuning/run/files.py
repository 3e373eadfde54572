"""Files of a run folder written atomically (to a temporary name, then renamed: no reader ever
sees half a file), and JSON read back."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any

from ..errors import UsageError


def read_json(path: str | os.PathLike, strict: bool = False) -> Any:
    """A JSON file's content; None when it is missing. When it is unreadable: None, or with
    `strict` a UsageError naming it and the fix."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        if strict:
            raise UsageError(f"{path} is unreadable ({e}); rerun the search to rewrite it") from None
        return None


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write `content` (text or bytes) to `path` via a temporary file and rename, so readers never
    see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

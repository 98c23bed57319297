"""Atomic file output: write beside the target, fsync, then rename. A reader never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


# Read once, at import: os.umask is process-wide, so reading it in a running program would race.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) for a temporary file in path's folder, then rename it onto path.

    The file gets the mode open() would give it (0666 less the umask), not mkstemp's private 0600,
    whatever `write` does: safetensors' save_file replaces the file with a 0600 one of its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def default_modes(directory: str | os.PathLike) -> Path:
    """Give `directory` and everything in it the modes mkdir() and open() would give (0777 / 0666 less
    the umask), for a folder built in a mkdtemp (0700) by writers that make 0600 files (safetensors).

    Returns:
        The directory.
    """
    directory = Path(directory)
    os.chmod(directory, _DIR_MODE)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), _DIR_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), _FILE_MODE)
    return directory


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")

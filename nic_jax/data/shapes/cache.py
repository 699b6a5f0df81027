"""A directory cache with atomic publication: build beside, rename into place.

A dataset directory is built in a hidden temporary sibling
(`.<name>~<host>~<pid>~<token>~tmp`), its manifest written last, then renamed onto
its final name. A killed build leaves only a temporary directory, which later calls
delete once its process is gone; of concurrent builds the first rename wins and the
others discard their copy and use the winner's. A final directory is used only when
its manifest equals the expected one.
"""

import json
import os
import pathlib
import secrets
import shutil
import socket
import time

MANIFEST = "manifest.json"
_STALE_SECONDS = 24 * 3600  # leftovers of other hosts are deleted after a day
_SEP = "~"


def default_cache_dir() -> pathlib.Path:
    """`$NIC_JAX_CACHE`, else `~/.cache/nic_jax`."""
    env = os.environ.get("NIC_JAX_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "nic_jax"


def is_complete(root: pathlib.Path, manifest: dict) -> bool:
    """Whether `root` holds a finished build whose manifest is `manifest`."""
    try:
        found = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return found == manifest


def temp_path(root: pathlib.Path, tag: str) -> pathlib.Path:
    """A hidden sibling of `root` private to this process (and call)."""
    owner = _SEP.join([socket.gethostname(), str(os.getpid()), secrets.token_hex(4)])
    return root.with_name(f".{root.name}{_SEP}{owner}{_SEP}{tag}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _is_stale(path: pathlib.Path) -> bool:
    parts = path.name[1:].split(_SEP)
    if len(parts) != 5 or not parts[2].isdigit():
        return False
    host, pid = parts[1], int(parts[2])
    if host == socket.gethostname() and not _pid_alive(pid):
        return True
    try:
        return time.time() - path.stat().st_mtime > _STALE_SECONDS
    except OSError:
        return False


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(cache: pathlib.Path) -> None:
    """Deletes temporary directories left in `cache` by builds that died."""
    for path in cache.glob(f".*{_SEP}*"):
        if _is_stale(path):
            _remove(path)


def discard(path: pathlib.Path) -> None:
    """Moves `path` aside (atomically), then deletes it; no-op if it is gone."""
    aside = temp_path(path, "discard")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    _remove(aside)


def publish(tmp: pathlib.Path, root: pathlib.Path, manifest: dict) -> pathlib.Path:
    """Renames the finished build `tmp` to `root`, unless a complete one is there."""
    for _ in range(3):
        try:
            os.replace(tmp, root)
            return root
        except OSError:
            if is_complete(root, manifest):  # a concurrent build won the race
                return root
            discard(root)  # an unfinished or foreign directory under our name
    raise OSError(f"cannot move {tmp} into place as {root}")


def build(root: pathlib.Path, manifest: dict, build_fn) -> pathlib.Path:
    """`root`, made by `build_fn(tmp_dir)` unless a complete build is already there."""
    if is_complete(root, manifest):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(root.parent)
    tmp = temp_path(root, "tmp")
    tmp.mkdir()
    try:
        build_fn(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True), "utf-8")
        return publish(tmp, root, manifest)
    finally:
        _remove(tmp)  # gone already after a successful rename

"""``ssd-cache``: look into and tidy the stage cache (``<paths.cache_dir>/stages``, docs/cache.md).

    ssd-cache ls                 every entry: name, when and by which commit it was trained, size
    ssd-cache show KEY           one entry's record (KEY: its name, its key, or a unique prefix of either)
    ssd-cache rm KEY...          delete entries (refused while a run holds the entry's lock)
    ssd-cache verify             re-hash every entry against its meta.json; exit 1 if any is bad
    ssd-cache gc                 remove set-aside ``.corrupt-*`` folders, temporary folders of publishes
                                 that died, and locks no live process holds

``--cache-dir`` defaults to the run config's ``paths.cache_dir`` (``SSD_CACHE_DIR``, else ``.cache/ssd``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from filelock import Timeout
from omegaconf import OmegaConf

from ssd.cache import HOLDER_SUFFIX, LOCKS, StageCache, describe_entry, holder_alive
from ssd.results import read_json

#: a temporary publish folder older than this is a leftover of a publish that died
TEMP_AGE_S = 3600


class CacheCliError(Exception):
    """A bad argument found after parsing (an unknown or ambiguous KEY): exit 2 with its message."""


def default_paths() -> dict[str, Any]:
    """``paths`` as a run composes it by default (conf/paths/default.yaml, environment resolved)."""
    from ssd.stages import group_section

    return OmegaConf.to_container(OmegaConf.create(group_section("paths", "default")), resolve=True)


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _find(cache: StageCache, key: str) -> str:
    names = cache.entries()
    if key in names:
        return key
    found = [n for n in names if n.startswith(key) or n.rsplit("-", 1)[-1].startswith(key)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CacheCliError(f"KEY {key!r} matches no entry of {cache.root}: `ssd-cache ls` lists them")
    raise CacheCliError(f"KEY {key!r} is ambiguous in {cache.root}: it matches {', '.join(found)}")


def cmd_ls(cache: StageCache, args: argparse.Namespace) -> int:
    names = cache.entries()
    for name in names:
        meta = read_json(cache.entry(name) / "meta.json") or {}
        print(f"{name}  {describe_entry(meta)}  {_size_mb(cache.entry(name)):.1f} MB")
    print(f"{len(names)} entries in {cache.root}")
    return 0


def cmd_show(cache: StageCache, args: argparse.Namespace) -> int:
    name = _find(cache, args.key)
    meta = read_json(cache.entry(name) / "meta.json") or {}
    print(f"{name}: {describe_entry(meta)}")
    print(f"folder: {cache.entry(name)}")
    print(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return 0


def cmd_rm(cache: StageCache, args: argparse.Namespace) -> int:
    names = [_find(cache, key) for key in args.keys]  # every KEY checked before anything is deleted
    for name in names:
        lock = cache.lock(name)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"{name}: not removed, a run holds its lock ({cache.lock_path(name)})", file=sys.stderr)
            return 1
        try:
            shutil.rmtree(cache.entry(name))
        finally:
            cache.release(lock, name)
        print(f"removed {name}")
    return 0


def cmd_verify(cache: StageCache, args: argparse.Namespace) -> int:
    bad = 0
    for name in cache.entries():
        problem = cache.problem(name)
        print(f"ok   {name}" if problem is None else f"BAD  {name}: {problem}")
        bad += problem is not None
    print(
        f"{len(cache.entries())} entries verified, {bad} bad"
        + (" (remove with `ssd-cache rm KEY`)" if bad else "")
    )
    return 1 if bad else 0


def _stale_lock(cache: StageCache, lock_path: Path) -> bool:
    """Whether no live process holds ``lock_path``: its holder record names a dead process on this host,
    or (fcntl locks) it can be taken at once."""
    holder = read_json(Path(f"{lock_path}{HOLDER_SUFFIX}"))
    if holder is not None and holder_alive(holder) is False:
        return True
    if cache.lock_kind == "soft":
        return False  # a soft lock is held while its file exists: only a dead holder makes it stale
    lock = LOCKS["file"](str(lock_path), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def cmd_gc(cache: StageCache, args: argparse.Namespace) -> int:
    removed: list[str] = []
    if cache.root.is_dir():
        now = time.time()
        for path in sorted(cache.root.iterdir()):
            corrupt = path.is_dir() and ".corrupt-" in path.name
            dead_publish = (
                path.is_dir() and path.name.startswith(".") and now - path.stat().st_mtime > TEMP_AGE_S
            )
            if corrupt or dead_publish:
                shutil.rmtree(path)
                removed.append(path.name)
            elif path.suffix == ".lock" and _stale_lock(cache, path):
                Path(f"{path}{HOLDER_SUFFIX}").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                removed.append(path.name)
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} leftovers removed from {cache.root}")
    return 0


COMMANDS = {"ls": cmd_ls, "show": cmd_show, "rm": cmd_rm, "verify": cmd_verify, "gc": cmd_gc}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssd-cache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cache-dir", help="the cache folder (default: paths.cache_dir of the run config)")
    p.add_argument("--lock", choices=sorted(LOCKS), help="the lock kind (default: paths.cache_lock)")
    sub = p.add_subparsers(dest="command", required=True, metavar="{ls,show,rm,verify,gc}")
    sub.add_parser("ls", help="list entries")
    sub.add_parser("show", help="one entry's record").add_argument("key", metavar="KEY")
    sub.add_parser("rm", help="delete entries").add_argument("keys", metavar="KEY", nargs="+")
    sub.add_parser("verify", help="re-hash every entry")
    sub.add_parser("gc", help="remove leftovers: .corrupt-* folders, dead temporary folders, stale locks")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    paths = default_paths() if args.cache_dir is None or args.lock is None else {}
    root = Path(args.cache_dir or paths["cache_dir"]) / "stages"
    cache = StageCache(root, lock=args.lock or paths["cache_lock"])
    try:
        return COMMANDS[args.command](cache, args)
    except CacheCliError as err:
        print(f"ssd-cache: error: {err}", file=sys.stderr)
        return 2


def console() -> int:
    """The ``ssd-cache`` console script."""
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

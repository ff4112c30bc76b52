"""Start-up hygiene for the data dir: what a crash left behind goes, and only the owner can read anything.

- **Leftovers.** Every local write goes to a ``.tmp-*`` file beside its object and is renamed into
  place; a process killed mid-write leaves the temp file (a whole transcript or MP3 copy, which
  ``aws s3 sync`` would upload) and possibly a folder it made and never filled. ``sweep_data_dir``
  removes ``.tmp-*`` files under ``archive/`` and ``analytics/`` (and at the data dir's top level,
  where secrets are written), then the folders left empty, never the roots. Only entries untouched for
  ``TEMP_GRACE_SECS``: ``callvault import`` or a second command may be writing right now, and a
  live temp file's modification time moves with every write.
- **Permissions.** Files 0600, folders 0700: the CLI sets the umask (``owner_only_umask``) so new
  files are born that way; ``tighten_permissions`` takes group and other access off what older
  versions wrote (every folder, and the files of folders that were loose; a ``chmod`` only where the
  mode is wrong; symlinks skipped).
  SQLite gives a new ``-wal``/``-shm`` its main file's mode whatever the umask, so an old 0644 index
  must be tightened before anything opens it: ``prepare_data_dir`` runs first thing in ``serve``.

``find_leftovers`` and ``find_loose_permissions`` only look, for ``callvault verify``'s report.
``foreign_entries`` keeps both away from a folder that is not a data dir (``--data-dir ~`` by mistake).
"""

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.core.config import Settings

TEMP_PREFIX = ".tmp-"  # the prefix of every temp file CallVault writes in the data dir
TEMP_GRACE_SECS = 15 * 60
SWEPT_FOLDERS = ("archive", "analytics")
OWNER_ONLY_UMASK = 0o077
_GROUP_OTHER = 0o077


@dataclass
class Leftovers:
    """What a sweep would remove: stale temp files, then the folders that would be left empty
    (deepest first, the order they can be removed in)."""

    temp_files: list[Path] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)
    fresh_temp_files: int = 0  # younger than the grace period: kept, a writer may still own them
    unreadable_folders: int = 0  # could not be listed (not ours?): kept, with all they hold


@dataclass(frozen=True)
class SweepReport:
    temp_files_removed: int = 0
    empty_folders_removed: int = 0
    fresh_temp_files_kept: int = 0
    failed: int = 0  # entries that could not be removed (the next start tries again)


@dataclass(frozen=True)
class PermissionReport:
    tightened: int = 0
    failed: int = 0  # entries we may not chmod (another owner) or folders we cannot list
    left_loose: int = 0  # of those, entries group or others can still read (chmod refused)
    example: Path | None = None  # the first of them, to name in the warning

    def warning(self, data_dir: Path) -> str | None:
        """What ``serve`` says when files stay readable by others (another user's, e.g. after a
        ``sudo callvault import``): the data dir is not what the docs promise, and only the operator can fix it."""
        if not self.left_loose:
            return None
        return (
            f"Warning: {self.left_loose:,} file(s) or folder(s) in {data_dir} stay readable by other users, and "
            f"this user may not change that (e.g. {self.example}: another user's?). Give them back to this user, "
            f"e.g. `sudo chown -R $(id -un) {data_dir}`, and restart; `callvault verify` lists what is left."
        )


def owner_only_umask() -> Callable[[], int]:
    """Make every file and folder this process creates owner-only (0600/0700) from now on; returns
    the function that puts the previous umask back (for commands run inside another process)."""
    previous = os.umask(OWNER_ONLY_UMASK)
    return lambda: os.umask(previous)


# Names CallVault creates at a data dir's top level: one of them says the folder is ours to tidy.
DATA_DIR_NAMES = frozenset(
    {
        "index.sqlite3",
        "privacy.sqlite3",
        "archive",
        "analytics",
        "memory",
        "callvault.lock",
        "webhook-secret",
        "api-key",
        "api-keys.json",
        "signing-key",
        "tombstone-key",
        "agent-secret",
        "served-url",
        "retention.toml",
    }
)


def foreign_entries(data_dir: Path) -> list[str]:
    """The names in an existing folder that make it not a data dir: it holds visible entries, none of
    them CallVault's (hidden ones and ``lost+found``, a fresh disk's, do not count). Empty: ours, or
    new. ``serve`` would make every file under such a folder owner-only and write its own beside them."""
    try:
        names = sorted(entry.name for entry in os.scandir(data_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError:
        return []  # unreadable: the lock reports it in its own words
    if any(name in DATA_DIR_NAMES for name in names):
        return []
    return [name for name in names if not name.startswith(".") and name != "lost+found"]


def prepare_data_dir(settings: Settings, now: float | None = None) -> tuple[PermissionReport, SweepReport]:
    """For ``callvault serve``, before anything opens the data dir: create it (0700), tighten what is
    already there, sweep a crash's leftovers, and log the counts in one line."""
    from services.core.logging import get_logger

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    permissions = tighten_permissions(data_dir)
    sweep = sweep_data_dir(data_dir, time.time() if now is None else now)
    get_logger("callvault", settings.log_level).info(
        "data dir prepared",
        extra={
            "temp_files_removed": sweep.temp_files_removed,
            "empty_folders_removed": sweep.empty_folders_removed,
            "fresh_temp_files_kept": sweep.fresh_temp_files_kept,
            "modes_tightened": permissions.tightened,
            "failed": sweep.failed + permissions.failed,
        },
    )
    return permissions, sweep


# -- leftovers ---------------------------------------------------------------------------------------


def find_leftovers(data_dir: Path, now: float, grace_secs: float = TEMP_GRACE_SECS) -> Leftovers:
    """What ``sweep_data_dir`` would remove at ``now`` (unix seconds), removing nothing."""
    found = Leftovers()
    cutoff = now - grace_secs
    for name in SWEPT_FOLDERS:
        root = data_dir / name
        if root.is_dir():
            _scan(str(root), cutoff, found)
    if data_dir.is_dir():  # secrets are written through temp files at the top level
        for entry in os.scandir(data_dir):
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                _classify_temp(entry, cutoff, found)
    return found


def sweep_data_dir(data_dir: Path, now: float, grace_secs: float = TEMP_GRACE_SECS) -> SweepReport:
    """Remove the temp files a crash left (older than ``grace_secs``) and the folders left empty.

    Idempotent. Safe beside a running writer: fresh temp files stay, and a folder is removed with
    ``rmdir``, which refuses if anything appeared in it since the scan.
    """
    leftovers = find_leftovers(data_dir, now, grace_secs)
    removed_files = removed_folders = failed = 0
    for path in leftovers.temp_files:
        try:
            path.unlink()
            removed_files += 1
        except FileNotFoundError:
            pass  # its writer finished or gave up meanwhile
        except OSError:
            failed += 1
    for path in leftovers.empty_folders:
        try:
            path.rmdir()
            removed_folders += 1
        except FileNotFoundError:
            pass
        except OSError:
            failed += 1  # not empty any more (a writer arrived) or not ours to remove
    return SweepReport(
        removed_files, removed_folders, leftovers.fresh_temp_files, failed + leftovers.unreadable_folders
    )


def _scan(folder: str, cutoff: float, found: Leftovers) -> bool:
    """Collect ``folder``'s leftovers; True if it holds nothing else (so it would end up empty)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return False  # removed while we walked: nothing for us to do
    except OSError:
        found.unreadable_folders += 1
        return False
    only_leftovers = True
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if _scan(entry.path, cutoff, found) and _mtime(entry) < cutoff:
                found.empty_folders.append(Path(entry.path))  # after its own contents: deepest first
            else:
                only_leftovers = False
        elif entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
            only_leftovers = _classify_temp(entry, cutoff, found) and only_leftovers
        else:
            only_leftovers = False
    return only_leftovers


def _classify_temp(entry: os.DirEntry[str], cutoff: float, found: Leftovers) -> bool:
    """Record a temp file as stale (True) or count it as fresh (False)."""
    if _mtime(entry) < cutoff:
        found.temp_files.append(Path(entry.path))
        return True
    found.fresh_temp_files += 1
    return False


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already: nothing to remove, and not stale


# -- permissions -------------------------------------------------------------------------------------


def find_loose_permissions(data_dir: Path) -> list[Path]:
    """Every entry under ``data_dir`` (itself included) that group or others may access, each file
    checked (an audit, for ``callvault verify``); symlinks skipped."""
    return [Path(path) for path, _mode in _loose_entries(data_dir, every_file=True, unreadable=[])]


def tighten_permissions(data_dir: Path, *, every_file: bool = False) -> PermissionReport:
    """Take group and other access off ``data_dir`` and what is under it (0644 -> 0600, 0755 -> 0700).

    Every folder is checked, but files only in folders that were not owner-only yet (and at the top
    level), unless ``every_file``: an owner-only folder was made under the CLI's umask, whose files are
    born 0600, or was tightened after its contents. One ``lstat`` per file cost 1.5-2 s per 200,000
    files on the dev VM; per folder, 0.25 s.
    """
    tightened = failed = 0
    example: Path | None = None
    unreadable: list[str] = []
    for path, mode in _loose_entries(data_dir, every_file=every_file, unreadable=unreadable):
        try:
            os.chmod(path, mode & ~_GROUP_OTHER)
            tightened += 1
        except FileNotFoundError:
            pass
        except OSError:
            failed += 1
            example = example or Path(path)
    return PermissionReport(tightened, failed + len(unreadable), failed, example)


def _loose_entries(data_dir: Path, *, every_file: bool, unreadable: list[str]) -> Iterator[tuple[str, int]]:
    """``(path, mode)`` of each entry with group/other bits, a folder after its contents (so a walk cut
    short leaves it loose, to be walked again). The root is followed if a symlink (the operator chose
    it); nothing under it is."""
    try:
        root_mode = stat.S_IMODE(os.stat(data_dir).st_mode)
    except FileNotFoundError:
        return
    yield from _loose_under(str(data_dir), True, every_file, unreadable)
    if root_mode & _GROUP_OTHER:
        yield str(data_dir), root_mode


def _loose_under(folder: str, check_files: bool, every_file: bool, unreadable: list[str]) -> Iterator[tuple[str, int]]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    except OSError:
        unreadable.append(folder)
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):  # from the folder listing: no system call
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                loose = bool(mode & _GROUP_OTHER)
                yield from _loose_under(entry.path, every_file or loose, every_file, unreadable)
                if loose:
                    yield entry.path, mode
            elif check_files and not entry.is_symlink():
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                if mode & _GROUP_OTHER:
                    yield entry.path, mode
        except FileNotFoundError:
            continue  # removed while we walked

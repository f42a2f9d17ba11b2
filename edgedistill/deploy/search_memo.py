"""The sensitivity search's measurements, kept in a JSON file as they are made.

Private (`path`): one search's file; an interrupted search resumes from it, and it is removed once
the search is done. Shared (`shared`, a folder): one file per search key, kept, so every run that
searches the same float file with the same scheme, clips, trials and seed (the teacher of several
student presets) measures each node set once. Processes side by side share the work: each claims
the node set it measures, in the file, under a lock; another process measures a set nobody holds,
or waits for one that a live process holds (a process that hangs keeps the others waiting: stop
it), measuring meanwhile the sets its search names as needed next. A claim from a process that
has ended is taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; processes side by side may measure a set twice
    fcntl = None

log = logging.getLogger(__name__)

POLL_S = 5.0            # how often a process waiting on another's measurement looks again
FOREIGN_STALE_S = 6 * 3600  # a claim from another host (or on Windows) counts as abandoned after this long


def cache_folder() -> Path:
    """Where searches share their measurements: the cache folder's `search` ($EDGEDISTILL_CACHE)."""
    from edgedistill.data.corpus import default_cache_dir

    return default_cache_dir() / "search"


def search_key(src: str | Path, what) -> str:
    """The key of a search: the float file's bytes and `what` (JSON-able: scheme, clips, trials, seed)."""
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(what, default=str).encode())
    return h.hexdigest()


def this_process() -> dict:
    """Who holds a claim: host, pid and the process's start (so a reused pid is not taken for it)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())}


def _started(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname() or os.name != "posix":  # (Windows' os.kill(pid, 0) is a Ctrl-C)
        return time.time() - owner.get("at", 0) < FOREIGN_STALE_S
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return owner.get("started") is None or _started(owner["pid"]) in (None, owner["started"])


class SearchMemo:
    """Measurements of one search ({node set: change}); see the module's docstring."""

    def __init__(self, key: str, path: str | Path | None = None, shared: str | Path | None = None,
                 owner: dict | None = None):
        self.key, self.private = key, Path(path) if path else None
        self.path = Path(shared) / f"{key}.json" if shared else self.private
        self.owner = owner or this_process()
        self.values: dict = {}
        if self.private and self.private.is_file():  # a run stopped before it shared, or a private one
            kept = json.loads(self.private.read_text())
            self.values = kept.get("measured", {}) if kept.get("key") == key else {}
        if self.path and self.path != self.private:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self._locked():
                    state = self._read()
                    state["measured"] = self.values = {**self.values, **state["measured"]}
                    self._write(state)
            except OSError as e:
                self._unshare(e)
        if self.values:
            log.info("sensitivity: resuming from %d measurement(s) in %s", len(self.values), self.path)

    def get(self, exclude: list[str]) -> dict | None:
        """The change measured for this node set (by any process), or None."""
        if self.shared and (state := self._state()):
            self.values = state["measured"]
        return self.values.get(node_set_name(exclude))

    def held(self) -> set[str]:
        """The node sets (as `|`-joined names) other live processes are measuring now: one read."""
        if not self.shared or not (state := self._state()):
            return set()
        return {name for name, holder in state["claims"].items()
                if name not in state["measured"] and not self._mine(holder) and _alive(holder)}

    def busy(self, exclude: list[str]) -> bool:
        """Whether another live process is measuring this node set now."""
        return node_set_name(exclude) in self.held()

    def claim(self, exclude: list[str]) -> bool:
        """Takes this node set to measure; False where it is measured or a live process holds it."""
        if not self.shared:
            return self.get(exclude) is None
        try:
            with self._locked():
                state = self._read()
                name, holder = node_set_name(exclude), state["claims"].get(node_set_name(exclude))
                if name in state["measured"] or (holder and not self._mine(holder) and _alive(holder)):
                    return False
                state["claims"][name] = {**self.owner, "at": time.time()}
                self._write(state)
        except OSError as e:
            self._unshare(e)
            return self.get(exclude) is None
        return True

    def release(self, exclude: list[str]) -> None:
        """Gives a claim back unmeasured (the measurement failed): another process may take it."""
        if self.shared:
            with contextlib.suppress(OSError), self._locked():  # (unwritable: it ends with this process)
                state = self._read()
                if self._mine(state["claims"].get(node_set_name(exclude)) or {}):
                    del state["claims"][node_set_name(exclude)]
                    self._write(state)

    def put(self, exclude: list[str], change: dict) -> dict:
        """Keeps a measurement (and ends this process's claim on it)."""
        self.values[node_set_name(exclude)] = change
        if self.path and not self.shared:  # this search's own file: what it holds is all there is
            self._write({"key": self.key, "measured": self.values, "claims": {}})
        elif self.path:
            try:
                with self._locked():
                    state = self._read()
                    state["measured"][node_set_name(exclude)] = change
                    state["claims"].pop(node_set_name(exclude), None)
                    self._write(state)
                    self.values = state["measured"]
            except OSError as e:  # (disk full, folder gone): keep the measurement here
                self._unshare(e)
                return self.put(exclude, change)
        return change

    def measure(self, exclude: list[str], fn, ahead=()) -> dict:
        """The change for this node set: kept, or waited for from the live process measuring it,
        or measured here with `fn(exclude)` (and kept). While it waits, it measures the sets of
        `ahead` (those the search may need next) that nobody has measured or holds."""
        while (change := self.get(exclude)) is None and not self.claim(exclude):
            later = next((s for s in ahead if self.claim(s)), None)  # (a measured set is not claimed)
            if later is None:
                time.sleep(POLL_S)
            else:
                self._measured(later, fn)
        return change if change is not None else self._measured(exclude, fn)

    def _measured(self, exclude: list[str], fn) -> dict:
        try:
            return self.put(exclude, fn(exclude))
        except BaseException:
            self.release(exclude)
            raise

    def done(self) -> None:
        """The search is over: a private file is removed, a shared one is kept for later runs."""
        if self.private:
            self.private.unlink(missing_ok=True)

    @property
    def shared(self) -> bool:
        return bool(self.path) and self.path != self.private

    def _state(self) -> dict | None:
        try:
            return self._read()
        except OSError as e:
            self._unshare(e)
            return None

    def _unshare(self, err: OSError) -> None:
        """The shared folder cannot be written: this search goes on with its own file (or memory)."""
        log.warning("sensitivity: the search cache %s cannot be written (%s); this search goes on "
                    "without it and shares nothing. Set EDGEDISTILL_CACHE to a writable folder (in a recipe, "
                    "export.search_cache=false searches without the cache).", self.path.parent, err)
        self.path = self.private

    def _mine(self, holder: dict) -> bool:
        return all(holder.get(k) == self.owner.get(k) for k in ("host", "pid", "started"))

    def _read(self) -> dict:
        try:
            kept = json.loads(self.path.read_text())
        except FileNotFoundError:
            kept = {}
        except json.JSONDecodeError:
            log.warning("sensitivity: %s is not readable JSON; starting it again", self.path)
            kept = {}
        if kept.get("key") != self.key:
            kept = {}
        return {"key": self.key, "measured": kept.get("measured", {}), "claims": kept.get("claims", {})}

    def _write(self, state: dict) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, default=float))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self):
        if fcntl is None or not self.shared:
            yield
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def node_set_name(exclude: list[str]) -> str:
    return "|".join(exclude)

"""Output folders that are safe to write into: checked before any work, one writer at a time.

:class:`OutputFolder` claims the folder a run writes into (``jola-lens train --out``,
``run_experiment(out_dir=...)``):

* before anything is loaded or trained it checks that the path is not a file and that a file can
  be written there (a folder that cannot be written fails in one line, before the 90 s of loading
  and zero-shot scoring, not after training);
* a second process writing into the same folder is refused while the first holds its lock (an OS
  lock on ``.jola-lens.lock``: it goes away with the process, also after ``kill -9``);
* a folder that already holds a finished run is refused unless ``overwrite=True`` (then the old
  run's files are removed first, so nothing stale is left beside the new run);
* a folder that holds a checkpoint (from Ctrl-C, ``kill -9`` or a crash) is *resumable*:
  :attr:`checkpoint` names it and the training continues from it.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with OutputFolder(d) as out:
    ...     out.state
    'fresh'
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["OutputFolder", "OutputFolderError", "atomic_write_text", "check_writable", "RUN_FILES"]

LOCK_FILE = ".jola-lens.lock"
CHECKPOINT_DIR = "checkpoint"
#: the files a finished run writes (besides figures and the checkpoint folder)
RUN_FILES = ("jola_config.json", "edits.safetensors", "results.json", "train_result.json", "gate_log.json",
             "gate_log.safetensors", "baseline.json", "baseline.safetensors", "scores.json")


class OutputFolderError(ValueError):
    """The output folder cannot be used (a file, not writable, in use, or holding a finished run)."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (never half a file)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and write (and remove) a probe file there; a one-line
    :class:`OutputFolderError` when it is a file or cannot be written."""
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise OutputFolderError(f"output folder {d} is a file, not a folder: choose another --out")
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".jola-lens-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OutputFolderError(f"cannot write into output folder {d}: {e.strerror or e}") from None
    return d


def _finished_run(d: Path) -> list[str]:
    return [n for n in ("jola_config.json", "baseline.json", "results.json") if (d / n).is_file()]


class OutputFolder:
    """Claim ``path`` for one run (see the module docstring); use as a context manager.

    Args:
        path: the output folder (created if missing).
        overwrite: replace a finished run found there.
        resume: ``True`` requires a checkpoint to continue from; ``False`` refuses to continue one
            (use ``overwrite`` to start afresh); ``None`` (default) continues a checkpoint when there
            is one, as re-running the same command does.
        replaceable: a predicate on the folder's ``results.json`` (a dict) telling whether that
            finished run may be replaced without ``overwrite`` (the demo replaces its own earlier demo).

    Attributes:
        state: ``"fresh"`` or ``"resume"`` (a checkpoint to continue from).
        checkpoint: the checkpoint folder when ``state == "resume"``, else ``None``.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool | None = None,
                 replaceable: Any = None) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.resume = resume
        self.replaceable = replaceable
        self.state = "fresh"
        self.checkpoint: Path | None = None
        self._lock_fd: int | None = None

    # -- claiming ----------------------------------------------------------------------------------
    def __enter__(self) -> "OutputFolder":
        self.claim()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @property
    def claimed(self) -> bool:
        return self._lock_fd is not None

    def claim(self) -> "OutputFolder":
        """Check the folder, take its lock and decide fresh / resume (idempotent)."""
        if self.claimed:
            return self
        check_writable(self.path)
        self._lock()
        try:
            self._decide()
        except BaseException:
            self.release()
            raise
        return self

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): a pid file created exclusively
            os.close(fd)
            try:
                fd = os.open(self.path / (LOCK_FILE + ".pid"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise OutputFolderError(f"{self.path} is in use by another jola-lens run (remove "
                                        f"{LOCK_FILE}.pid if no run is writing there)") from None
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                other = ""
                try:
                    other = os.read(fd, 64).decode().strip()
                except OSError:
                    pass
                os.close(fd)
                who = f" (pid {other})" if other else ""
                raise OutputFolderError(f"{self.path} is being written by another jola-lens run{who}: wait for it "
                                        "to finish or choose another --out") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            (self.path / (LOCK_FILE + ".pid")).unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _decide(self) -> None:
        d = self.path
        finished = _finished_run(d)
        ckpt = d / CHECKPOINT_DIR
        has_ckpt = (ckpt / "latest.json").is_file() or (ckpt / "state.safetensors").is_file()
        if finished:
            if not (self.overwrite or self._replaceable()):
                raise OutputFolderError(
                    f"{d} already holds a finished run ({', '.join(finished)}): pass --overwrite to replace it, "
                    "or choose another --out")
            self.clear()
            return
        if self.overwrite:
            self.clear()
            return
        if has_ckpt and self.resume is not False:
            self.state, self.checkpoint = "resume", ckpt
        elif has_ckpt:
            raise OutputFolderError(f"{d} holds the checkpoint of an unfinished run: resume it (--resume), or pass "
                                    "--overwrite to start afresh")
        if self.resume is True and self.state != "resume":
            raise OutputFolderError(f"nothing to resume in {d}: it has no checkpoint ({CHECKPOINT_DIR}/latest.json)")

    def _replaceable(self) -> bool:
        if self.replaceable is None or not (self.path / "results.json").is_file():
            return False
        try:
            return bool(self.replaceable(json.loads((self.path / "results.json").read_text())))
        except (OSError, ValueError):
            return False

    def clear(self) -> None:
        """Remove a previous run's files (run files, predictions, figures, checkpoint), keep the rest."""
        d = self.path
        for name in RUN_FILES:
            (d / name).unlink(missing_ok=True)
        for pattern in ("predictions*.jsonl", "*.html", "plotly.min.js"):
            for p in d.glob(pattern):
                p.unlink(missing_ok=True)
        shutil.rmtree(d / CHECKPOINT_DIR, ignore_errors=True)
        self.state, self.checkpoint = "fresh", None

    def finished(self) -> None:
        """The run is saved: its checkpoint is no longer needed."""
        shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, state={self.state!r})"

"""Crash-safe streaming of a recording into a zarr store, batch by batch, with resume.

A streamed store keeps two bookkeeping attrs on its root group: ``insilico_job`` (a JSON
fingerprint of the job that writes it) and ``presentations_done`` (how many presentations
are committed). The count is updated only after a batch is on disk, so a crash leaves every
finished batch readable and a rerun of the same job resumes after the last committed batch.
A writer holds an exclusive lock file ``<store>.lock`` (pid, host, start time) while it
writes, so a second writer of the same store is refused (a lock left by a dead process on
this host is taken over).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from recordings.format import json_attrs
from recordings.store import (
    COMPLETE_ATTR,
    DONE_ATTR,
    JOB_ATTR,
    VARIABLE,
    as_zarr_dataset,
    check_target,
    open_recording,
    presentation_arrays,
    root_attrs,
)


class StoreLock:
    """An exclusive lock file ``<store>.lock`` naming its holder (pid, host, start time).

    Taken with ``O_CREAT | O_EXCL`` (atomic on local file systems). A lock whose holder is a
    process of this host that no longer runs is stale and taken over; a live holder, or one
    on another host, makes :meth:`acquire` raise a one-line ``BlockingIOError``.
    """

    def __init__(self, store: Path) -> None:
        self.path = store.with_name(store.name + ".lock")
        self.held = False

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, OverflowError):
            return False
        return False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and self._stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise BlockingIOError(
                    f"{str(self.path.with_suffix(''))!r} is being written by another process "
                    f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, lock "
                    f"{str(self.path)!r}); wait for it, or delete the lock file if that process "
                    "is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise BlockingIOError(f"could not take the lock {str(self.path)!r}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class StreamWriter:
    """Append a recording to a zarr store batch by batch, resuming an interrupted job.

    ``job`` is a JSON-able fingerprint of everything that determines the recording's values
    (model, stimuli, targets, seed, batch size, ...). If ``path`` holds a store of the same
    job, writing resumes after its last committed batch (and a completed store is left as
    it is); a store of another job, or any other file, is refused unless ``overwrite``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        job: Mapping[str, Any],
        overwrite: bool = False,
        resume: bool = True,
    ) -> None:
        self.path = Path(path)
        if str(path) in ("", "."):
            raise ValueError(
                f"output path {str(path)!r} names the working directory; give a store path"
            )
        self.job = json.dumps(json_attrs(job), sort_keys=True)
        self.done = 0
        self.complete = False
        self._exists = False
        self.lock = StoreLock(self.path)
        self.lock.acquire()
        try:
            self._open(overwrite, resume)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, overwrite: bool, resume: bool) -> None:
        if self.path.exists() and not overwrite:
            try:
                attrs = root_attrs(self.path) if self.path.is_dir() else {}
            except ValueError:
                attrs = {}
            if resume and attrs.get(JOB_ATTR) == self.job:
                self.complete = bool(attrs.get(COMPLETE_ATTR, False))
                self.done = int(attrs.get(DONE_ATTR, 0))
                if self.done == 0:
                    shutil.rmtree(self.path)
                else:
                    self._exists = True
                    self._truncate()
            else:
                why = (
                    "it was written by a different job"
                    if JOB_ATTR in attrs
                    else "it is not a resumable insilico-lab recording"
                )
                raise FileExistsError(
                    f"output path {str(self.path)!r} exists and {why}; pass overwrite=True "
                    "(CLI: --overwrite) to replace it"
                )
        elif self.path.exists():
            check_target(self.path, overwrite=True)

    def _truncate(self) -> None:
        """Drop presentations written after the last commit (a batch cut off by a crash)."""
        group = zarr.open_group(str(self.path), mode="r+")
        arrays = presentation_arrays(group)
        short = [a.basename for a in arrays if a.shape[0] < self.done]
        if short:
            raise ValueError(
                f"cannot resume {str(self.path)!r}: {', '.join(sorted(short))} hold fewer than "
                f"the {self.done} committed presentations (damaged store); pass overwrite=True "
                "to start again"
            )
        for array in arrays:
            if array.shape[0] != self.done:
                array.resize((self.done, *array.shape[1:]))

    def close(self) -> None:
        """Release the store's lock (the committed batches stay readable and resumable)."""
        self.lock.release()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, rec: xr.DataArray) -> None:
        """Write one batch of presentations and commit it."""
        ds = as_zarr_dataset(rec)
        # xarray rewrites the group attrs on every write: keep the bookkeeping in them
        ds.attrs = {JOB_ATTR: self.job, DONE_ATTR: self.done, COMPLETE_ATTR: False}
        if not self._exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            ds.to_zarr(self.path, mode="w-", consolidated=False)
            self._exists = True
        else:
            ds[VARIABLE].attrs = {}
            ds.to_zarr(self.path, mode="a-", append_dim="presentation", consolidated=False)
        self._commit(self.done + int(rec.sizes["presentation"]))

    def _commit(self, done: int) -> None:
        """Record that the first ``done`` presentations are on disk (after their write)."""
        zarr.open_group(str(self.path), mode="r+").attrs[DONE_ATTR] = done
        self.done = done

    def finish(self, attrs: Mapping[str, Any] | None = None) -> xr.DataArray:
        """Mark the store complete (updating the recording's provenance attrs) and open it."""
        group = zarr.open_group(str(self.path), mode="r+")
        if attrs:
            group[VARIABLE].attrs.update(json_attrs(attrs))
        group.attrs[COMPLETE_ATTR] = True
        self.complete = True
        self.close()
        return open_recording(self.path)

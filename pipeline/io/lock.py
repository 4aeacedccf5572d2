"""One run at a time per job and date: a lock file under ``<storage.root>/_locks``.

A second ``build-samples --date D`` (or ``train``, ``score``, ``run``) started while the first still
runs fails at once with one line naming the holder, or waits for it up to
``storage.lock_wait_seconds``. The holder refreshes the file's time every ``HEARTBEAT_SECONDS``;
a lock whose holder was killed (``kill -9``, a lost driver) is taken over once its time is
``STALE_SECONDS`` old, or at once when its process is gone on this host, so the next night heals.

Local and mounted paths use an exclusive create (atomic); other roots (``s3://``, ``dbfs:/``) use
the Hadoop file system of the Spark session.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
from typing import Callable, Iterator, Optional
from urllib.parse import urlparse

from pipeline.errors import RunFailure

HEARTBEAT_SECONDS = 20.0
STALE_SECONDS = 120.0


class LocalFiles:
    """Lock files on a local or mounted path."""

    def create(self, path: str, text: str) -> bool:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return True

    def read(self, path: str) -> Optional[tuple[str, float]]:
        """The file's text and age in seconds, or ``None`` when it is gone."""
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            return None

    def touch(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class HadoopFiles:
    """Lock files on any file system Spark's Hadoop configuration reaches."""

    def __init__(self, spark) -> None:
        self._spark = spark

    def _fs(self, path: str):
        from pipeline.io.hadoop import hadoop_file_system

        return hadoop_file_system(self._spark, path)

    def create(self, path: str, text: str) -> bool:
        fs, p = self._fs(path)
        if not fs.createNewFile(p):
            return False
        stream = fs.create(p, True)
        stream.write(bytearray(text.encode()))
        stream.close()
        return True

    def read(self, path: str) -> Optional[tuple[str, float]]:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return None
        from pipeline.io.hadoop import read_bytes

        status = fs.getFileStatus(p)
        data = read_bytes(self._spark, path)
        return data.decode(errors="replace"), time.time() - status.getModificationTime() / 1000.0

    def touch(self, path: str) -> None:
        fs, p = self._fs(path)
        with contextlib.suppress(Exception):
            fs.setTimes(p, int(time.time() * 1000), -1)

    def remove(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.delete(p, False)


def is_local(root: str) -> bool:
    return urlparse(root).scheme in ("", "file")


def lock_path(root: str, job: str, key: str) -> str:
    local = urlparse(root).path if root.startswith("file:") else root
    return f"{local.rstrip('/')}/_locks/{job}-{key}.lock"


def is_stale(holder: dict, age_seconds: float) -> bool:
    """A holder that stopped refreshing its lock, or whose process is gone on this host."""
    if age_seconds > STALE_SECONDS:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


@contextlib.contextmanager
def job_lock(root: str, job: str, key: str, *, wait_seconds: float = 0.0,
             files_for_remote: Optional[Callable[[], HadoopFiles]] = None) -> Iterator[str]:
    """Holds the lock of ``job`` and ``key`` (a date) under ``root`` while the block runs.

    Raises:
        RunFailure: another run holds it (after ``wait_seconds``), naming the holder and the file.
    """
    files = LocalFiles() if is_local(root) or files_for_remote is None else files_for_remote()
    path = lock_path(root, job, key)
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    deadline = time.monotonic() + wait_seconds
    while not files.create(path, json.dumps(me)):
        found = files.read(path)
        if found is None:
            continue  # released meanwhile
        text, age = found
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {}
        if is_stale(holder, age):
            files.remove(path)
            continue
        if time.monotonic() >= deadline:
            raise RunFailure(f"another {job} run for {key} is running (pid {holder.get('pid')} on "
                             f"{holder.get('host')}, since {holder.get('started_at')}; lock {path}); "
                             f"wait for it, or set storage.lock_wait_seconds")
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            files.touch(path)

    beat = threading.Thread(target=heartbeat, name=f"lock-{job}", daemon=True)
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        beat.join()
        files.remove(path)

"""One run per job and date: a second run fails at once (or waits), a dead holder's lock is taken over."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from pipeline.errors import RunFailure
from pipeline.io.lock import job_lock, lock_path


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path):
    with job_lock(str(tmp_path), "build-samples", "2026-10-05") as path:
        holder = json.loads(open(path, encoding="utf-8").read())
        assert holder["pid"] == os.getpid()
        with pytest.raises(RunFailure, match=rf"another build-samples run for 2026-10-05 is running \(pid {os.getpid()}"):
            with job_lock(str(tmp_path), "build-samples", "2026-10-05"):
                pass
        with job_lock(str(tmp_path), "build-samples", "2026-10-06"):  # another date is another lock
            pass
    assert not os.path.exists(path)  # released


def test_a_waiting_run_starts_when_the_holder_finishes(tmp_path):
    held = threading.Event()

    def hold():
        with job_lock(str(tmp_path), "score", "2026-10-05"):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    began = time.monotonic()
    with job_lock(str(tmp_path), "score", "2026-10-05", wait_seconds=30):
        assert time.monotonic() - began >= 0.5
    holder.join()


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = lock_path(str(tmp_path), "train", "2026-10-05")
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"host": os.uname().nodename, "pid": dead.pid, "started_at": "2026-10-06T02:00:00+00:00"}, fh)
    with job_lock(str(tmp_path), "train", "2026-10-05"):
        pass
    # A holder on another host that stopped refreshing its lock is stale too.
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"host": "elsewhere", "pid": 1}, fh)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    with job_lock(str(tmp_path), "train", "2026-10-05"):
        pass


def test_the_cli_exits_1_with_one_line_while_another_run_holds_the_date(tmp_path):
    with job_lock(str(tmp_path), "build-samples", "2026-10-05"):
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "build-samples", "--set",
                                 f"storage.root={tmp_path}", "--date", "2026-10-05"],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline build-samples: failed: another build-samples run "
                                                   "for 2026-10-05 is running")

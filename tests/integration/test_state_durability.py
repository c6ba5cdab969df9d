"""The SQLite store keeps every acknowledged write through `kill -9`.

A child process writes in a loop, one transaction per key (the key, a counter, and a
blob of 4-64 KiB so that commits span many pages), and prints each key once `txn` has
returned. The test kills it with SIGKILL at random moments, reopens the store and checks
that every acknowledged write is there, that the revision counter agrees with the keys
(at most the one transaction in flight was committed without being acknowledged), that
the history replays, that SQLite finds the file sound, and that the next writer carries
on. No root needed.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from orchestr.state import STORE_FILE, EventType, SqliteStore
from tests.conftest import MARKER

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5

WRITER = r"""
import os, sys
from orchestr.state import Compare, Put, SqliteStore

store = SqliteStore(sys.argv[1])
kvs, revision = store.range("k/")
i = len(kvs)
print(f"start {revision}", flush=True)
while True:
    key = f"k/{i:08d}"
    blob = os.urandom(1024 * (4 + i % 61))
    ops = [Put(key, b"%d" % i), Put("counter", b"%d" % i), Put(f"blob/{i % 8}", blob)]
    result = store.txn([Compare.absent(key)], ops)
    assert result.succeeded, key
    print(f"{key} {result.revision}", flush=True)
    i += 1
"""


def run_writer_until_killed(db: Path, log: Path, rng: random.Random) -> list[tuple[str, int]]:
    """Start a writer, SIGKILL it after a random while; what it acknowledged."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), MARKER],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not log.read_text().startswith("start"):
            assert proc.poll() is None, f"the writer died: {log.read_text()}"
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked = []
    for line in log.read_text().splitlines(keepends=True)[1:]:
        if line.endswith("\n"):  # a line cut short by the kill was not acknowledged
            key, revision = line.split()
            acked.append((key, int(revision)))
    return acked


def check_store(db: Path, acknowledged: dict[str, int]) -> int:
    """Every acknowledged write is there and the counter agrees; the store's revision."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    store = SqliteStore(db)
    try:
        kvs, revision = store.range("k/")
        for key, acked_revision in acknowledged.items():
            kv = store.get(key)
            assert kv is not None, f"acknowledged {key} (revision {acked_revision}) is lost"
            assert kv.mod_revision == acked_revision
        # one transaction per key: revisions 1..revision made keys 0..revision-1
        assert len(kvs) == revision
        assert [kv.key for kv in kvs] == [f"k/{i:08d}" for i in range(revision)]
        assert all(kv.mod_revision == i + 1 for i, kv in enumerate(kvs))
        last = max(acknowledged.values(), default=0)
        assert revision in (last, last + 1), "more than the one write in flight unacknowledged"
        counter = store.get("counter")
        assert counter is not None and counter.value == b"%d" % (revision - 1)
        start = max(store.compact_revision, 1)
        with store.watch("k/", start) as watch:
            events = []
            while (event := watch.get(timeout=0)) is not None:
                events.append(event)
        assert [e.revision for e in events] == list(range(start, revision + 1))
        assert all(e.type is EventType.PUT for e in events)
        return revision
    finally:
        store.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db = tmp_path / STORE_FILE
    acknowledged: dict[str, int] = {}
    revisions = []
    for round_ in range(ROUNDS):
        acked = run_writer_until_killed(db, tmp_path / f"writer-{round_}.log", rng)
        acknowledged.update(acked)
        revisions.append(check_store(db, acknowledged))
    assert revisions == sorted(revisions), f"seed {seed}"
    assert revisions[-1] > revisions[0] > 0, f"the writers made no progress (seed {seed})"

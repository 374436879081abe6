#!/usr/bin/env python3
"""Why samples are stored as blocks: insert rate into a row-per-sample table
with a (series_id, at) index, in fleet order (each round every agent's 100
series, agents shuffled), against the same samples as one block row per
report, after N rounds of history. Uses only Python's sqlite3, the
collector's pragmas (WAL, synchronous=FULL) and its 16 MiB page cache.

Run: python3 tests/bench-scripts/sample_index_aging.py [HISTORY_ROUNDS...]
(default 1 60 300: an empty table, 10 and 50 minutes of a fleet reporting
every 10 s). 1,000 agents x 100 series; measures 5 rounds (rows) or 20
rounds (blocks), 100 reports per transaction. Prints rates; asserts nothing.
"""
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid

AGENTS, SERIES, BASE = 1000, 100, 1_700_000_000_000


def connect(path):
    c = sqlite3.connect(path)
    c.execute("pragma journal_mode=wal")
    c.execute("pragma synchronous=full")
    c.execute("pragma cache_size=-16384")
    return c


def timed_inserts(c, insert, batch, history, rounds, commit_every):
    """Inserts `history` rounds untimed (committing every `commit_every`),
    then `rounds` more, 100 reports per transaction; returns samples/s.
    `batch(round, agents)` yields the parameters of those agents' reports."""
    agents = list(range(AGENTS))
    for r in range(history):
        random.shuffle(agents)
        c.executemany(insert, batch(r, agents))
        if r % commit_every == commit_every - 1:
            c.commit()
    c.commit()
    t, n = time.time(), 0
    for r in range(history, history + rounds):
        random.shuffle(agents)
        for k in range(0, AGENTS, 100):
            c.executemany(insert, batch(r, agents[k:k + 100]))
            c.commit()
            n += 100 * SERIES
    return n / (time.time() - t)


def rows(path, history):
    c = connect(path)
    c.execute("CREATE TABLE samples (series_id INTEGER NOT NULL, at INTEGER NOT NULL, value REAL NOT NULL, sequence INTEGER NOT NULL)")
    c.execute("CREATE INDEX samples_by_series_time ON samples (series_id, at)")

    def batch(r, agents):
        return ((a * SERIES + i + 1, BASE + r * 10000, float(i), r) for a in agents for i in range(SERIES))

    return timed_inserts(c, "INSERT INTO samples VALUES (?,?,?,?)", batch, history, 5, 20)


def blocks(path, history):
    c = connect(path)
    c.execute("CREATE TABLE blocks (block_id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, sequence INTEGER NOT NULL, at INTEGER NOT NULL, samples INTEGER NOT NULL, body BLOB NOT NULL)")
    c.execute("CREATE INDEX blocks_by_agent ON blocks (agent_id, at)")
    ids = [str(uuid.uuid4()) for _ in range(AGENTS)]
    body = os.urandom(SERIES * 9 + 6)  # what a block of 100 samples encodes to

    def batch(r, agents):
        return ((ids[a], r, BASE + r * 10000, SERIES, body) for a in agents)

    return timed_inserts(
        c, "INSERT INTO blocks (agent_id, sequence, at, samples, body) VALUES (?,?,?,?,?)", batch, history, 20, 50)


def main():
    for history in [int(a) for a in sys.argv[1:]] or [1, 60, 300]:
        for name, run in (("row per sample", rows), ("block per report", blocks)):
            with tempfile.TemporaryDirectory() as d:
                rate = run(os.path.join(d, "x.db"), history)
            print(f"history {history:>4} rounds, {name:>16}: {rate:>10.0f} samples/s")


if __name__ == "__main__":
    main()

"""Judgments in SQLite (WAL mode): one row per annotator, pair and order.

Every web request opens its own connection; WAL lets readers go on while one writer
writes, and a busy timeout makes concurrent writers wait instead of failing. A judgment is
written once: a second submission of the same (annotator, pair, order), such as a
double-click or a second tab, is ignored, so the first choice stands.
"""

from __future__ import annotations

import csv
import secrets
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ple.annotate.pairs import fingerprint
from ple.errors import UserError
from ple.evaluation.pairwise import Matched, Pair

KIND = "ple-annotate"
SCHEMA_VERSION = "1"
CHOICES = ("1", "2", "equal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    query TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    pair INTEGER NOT NULL REFERENCES pairs(id),
    ord INTEGER NOT NULL CHECK (ord IN (0, 1)),
    position INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('1', '2', 'equal')),
    time TEXT NOT NULL,
    UNIQUE (annotator, pair, ord)
);
"""


@dataclass(frozen=True)
class Judgment:
    annotator: str
    pair: int
    order: int  # 0: model A was Response 1; 1: model B was
    position: int  # 0-based place in the annotator's schedule
    choice: str  # "1", "2" or "equal", as clicked
    time: str  # ISO 8601, UTC

    @property
    def preferred(self) -> str:
        """The model the choice favours: "A", "B" or "equal"."""
        return preferred(self.choice, self.order)


def preferred(choice: str, order: int) -> str:
    if choice == "equal":
        return "equal"
    first_is_a = order == 0
    return "A" if (choice == "1") == first_is_a else "B"


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _meta(conn: sqlite3.Connection) -> dict[str, str] | None:
    """The meta table; None for an empty database, {} for one without that table.
    Raises sqlite3.DatabaseError for a file that is not a database."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        return {}
    return dict(conn.execute("SELECT key, value FROM meta"))


def create_or_check(db: str, matched: Matched, file_a: str, file_b: str,
                    label_a: str, label_b: str) -> bool:
    """Make `db` for these pairs, or check that it was made for them. True if new."""
    fp = fingerprint(matched.pairs)
    if Path(db).is_dir():
        raise UserError(f"--db {db} is a directory (give a file name, e.g. judgments.sqlite)")
    try:
        conn = connect(db)
    except sqlite3.Error as e:
        raise UserError(f"--db {db}: cannot open ({e})") from None
    try:
        try:
            meta = _meta(conn)  # read only: a database that is not ours stays untouched
            if meta is None:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                meta = _meta(conn)  # another serve may have made it meanwhile
                if meta is not None:
                    conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as e:
            raise UserError(f"--db {db}: not an SQLite database ({e})") from None
        if meta is not None:
            if meta.get("kind") != KIND:
                raise UserError(f"--db {db}: an SQLite database that ple annotate did not "
                                f"make; choose another file")
            if meta.get("fingerprint") != fp:
                raise UserError(
                    f"--db {db} holds judgments of another pair of files ({meta['file_a']} "
                    f"vs {meta['file_b']}, {meta['n_pairs']} pairs); these files differ "
                    f"from them, so use another --db")
            return False
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?)",
                         [(p.id, p.query, p.response_a, p.response_b) for p in matched.pairs])
        meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, "fingerprint": fp,
                "file_a": str(file_a), "file_b": str(file_b), "label_a": label_a,
                "label_b": label_b, "n_pairs": str(len(matched.pairs)),
                "secret": secrets.token_hex(16), "created": now()}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        return True
    finally:
        conn.close()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """A ple annotate database made by `create_or_check`."""

    def __init__(self, db: str | Path, flag: str = "--db"):
        self.path = Path(db)
        if not self.path.is_file():
            raise UserError(f"{flag} {db} does not exist (`ple annotate serve` makes it)")
        conn = connect(self.path)
        try:
            meta = _meta(conn)
        except sqlite3.DatabaseError:
            raise UserError(f"{flag} {db}: not an SQLite database") from None
        finally:
            conn.close()
        if not meta or meta.get("kind") != KIND:
            raise UserError(f"{flag} {db}: not a ple annotate database")
        self.meta = meta
        self.n_pairs = int(meta["n_pairs"])

    def connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def pairs(self) -> dict[int, Pair]:
        with self._conn() as conn:
            return {r[0]: Pair(*r) for r in conn.execute(
                "SELECT id, query, response_a, response_b FROM pairs ORDER BY id")}

    def pair(self, pair_id: int) -> Pair:
        with self._conn() as conn:
            row = conn.execute("SELECT id, query, response_a, response_b FROM pairs "
                               "WHERE id = ?", (pair_id,)).fetchone()
        return Pair(*row)

    def done(self, annotator: str) -> set[tuple[int, int]]:
        """The (pair, order) this annotator has judged."""
        with self._conn() as conn:
            return {(p, o) for p, o in conn.execute(
                "SELECT pair, ord FROM judgments WHERE annotator = ?", (annotator,))}

    def add(self, annotator: str, pair: int, order: int, position: int, choice: str) -> bool:
        """Record a judgment; False if this (annotator, pair, order) was judged already."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r}")
        with self._conn() as conn:
            cur = conn.execute(
                "INSERT INTO judgments (annotator, pair, ord, position, choice, time) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (annotator, pair, ord) DO NOTHING",
                (annotator, pair, order, position, choice, now()))
            return cur.rowcount == 1

    def judgments(self) -> list[Judgment]:
        with self._conn() as conn:
            return [Judgment(*r) for r in conn.execute(
                "SELECT annotator, pair, ord, position, choice, time FROM judgments "
                "ORDER BY annotator, position")]

    def export_csv(self, out) -> int:
        """Write every judgment as CSV to the text stream `out`; returns the row count."""
        pairs = self.pairs()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["annotator", "pair", "order", "position", "choice", "preferred",
                         "time", "query"])
        rows = self.judgments()
        for j in rows:
            writer.writerow([j.annotator, j.pair, "A-B" if j.order == 0 else "B-A",
                             j.position + 1, j.choice, j.preferred, j.time,
                             pairs[j.pair].query])
        return len(rows)

    @contextmanager
    def _conn(self):
        conn = self.connect()  # sqlite3's own context manager commits but does not close
        try:
            yield conn
        finally:
            conn.close()

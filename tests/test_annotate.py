"""`ple annotate` without a browser: matching, schedules, the win/tie/lose rule, Fleiss'
kappa, storage under concurrent writers, access control, what the page may show, the CLI
and its bad inputs. The browser tests are in test_annotate_browser.py."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, run_ple
from ple.annotate.app import Server, create_app
from ple.annotate.pairs import schedule
from ple.annotate.report import fleiss_kappa, summarize
from ple.annotate.store import Judgment, Store, create_or_check, preferred
from ple.errors import UserError
from ple.evaluation.pairwise import labels, match, outcome

# Names that must never reach the judging page: folders, file names, stems.
SECRET_DIR_A, SECRET_DIR_B = "omega-run-hidden", "sigma-run-hidden"
SECRET_FILE_A, SECRET_FILE_B = "zeta-model-secret.jsonl", "kappa-model-secret.jsonl"


# ---------------------------------------------------------------- helpers (shared) ----

def write_samples(path: Path, rows) -> Path:
    """An eval_samples.jsonl: rows of (query, response)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"query": q, "response": r, "reward": 0.5}) + "\n"
                            for q, r in rows), encoding="utf-8")
    return path


def make_files(tmp_path: Path, n: int = 6, extra_a=(), extra_b=()):
    """Two models' samples on n shared queries: A answers "first answer k", B "second
    answer k". Returns (file_a, file_b, {query: (response_a, response_b)})."""
    texts = {f"Query number {k}: how?": (f"First answer {k}.", f"Second answer {k}.")
             for k in range(1, n + 1)}
    a = write_samples(tmp_path / SECRET_DIR_A / SECRET_FILE_A,
                      [(q, r[0]) for q, r in texts.items()] + list(extra_a))
    b = write_samples(tmp_path / SECRET_DIR_B / SECRET_FILE_B,
                      list(extra_b) + [(q, r[1]) for q, r in reversed(texts.items())])
    return a, b, texts


def make_db(tmp_path: Path, n: int = 6, texts=None) -> tuple[Path, Path, Path]:
    if texts is None:
        a, b, _ = make_files(tmp_path, n)
    else:
        a = write_samples(tmp_path / SECRET_DIR_A / SECRET_FILE_A,
                          [(q, r[0]) for q, r in texts.items()])
        b = write_samples(tmp_path / SECRET_DIR_B / SECRET_FILE_B,
                          [(q, r[1]) for q, r in texts.items()])
    db = tmp_path / "judgments.sqlite"
    create_or_check(str(db), match(str(a), str(b)), str(a), str(b), *labels(str(a), str(b)))
    return a, b, db


class Running:
    """A real server for `db` on 127.0.0.1 and a free port, stopped on exit."""

    def __init__(self, db, token=None):
        self.server = Server(create_app(db, token), "127.0.0.1", 0)

    def __enter__(self):
        self.server.start()
        return self.server

    def __exit__(self, *exc):
        self.server.stop()


def judge_page_fields(html: str) -> dict:
    """position, key, response texts of a judging page (as a person would read them)."""
    import html as html_mod

    def grab(pattern):
        m = re.search(pattern, html, re.S)
        return html_mod.unescape(m.group(1)) if m else None

    return {"position": grab(r'name="position" value="(\d+)"'),
            "key": grab(r'name="key" value="([0-9a-f]+)"'),
            "query": grab(r'id="query">(.*?)</div>'),
            "first": grab(r'id="response-1">(.*?)</div>'),
            "second": grab(r'id="response-2">(.*?)</div>')}


def fetch(url, data=None, headers=None, opener=None):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode()
                                 if data is not None else None, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ple: error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------- the paper's rule -------

@pytest.mark.parametrize("first,second,expected", [
    ("A", "A", "win"), ("B", "B", "lose"),
    ("A", "B", "tie"), ("B", "A", "tie"),
    ("A", "equal", "tie"), ("equal", "A", "tie"),
    ("B", "equal", "tie"), ("equal", "B", "tie"), ("equal", "equal", "tie"),
])
def test_outcome_rule(first, second, expected):
    assert outcome(first, second) == expected


def test_outcome_rejects_unknown_preferences():
    with pytest.raises(ValueError):
        outcome("A", "1")


@pytest.mark.parametrize("choice,order,expected", [
    ("1", 0, "A"), ("2", 0, "B"), ("1", 1, "B"), ("2", 1, "A"),
    ("equal", 0, "equal"), ("equal", 1, "equal"),
])
def test_choice_maps_to_the_model_shown_there(choice, order, expected):
    assert preferred(choice, order) == expected


# --------------------------------------------------------------------- kappa ----------

def test_fleiss_kappa_on_fleiss_worked_example():
    # Fleiss (1971) as worked in the Wikipedia article: 10 items, 14 raters, 5 categories;
    # P-bar = 0.378, P-e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)


def test_fleiss_kappa_by_hand():
    # 3 items, 2 raters, categories (win, tie, lose): agreement on items 1 and 3.
    # P_i = 1, 0, 1 -> P-bar = 2/3; p = (2/6, 3/6, 1/6) -> P-e = 14/36; kappa = 5/11.
    assert fleiss_kappa([[2, 0, 0], [0, 1, 1], [0, 2, 0]]) == pytest.approx(5 / 11)
    assert fleiss_kappa([[2, 0, 0], [0, 2, 0], [0, 0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[1, 1, 0], [0, 1, 1], [1, 0, 1]]) == pytest.approx(-0.5)
    assert fleiss_kappa([[2, 0, 0], [2, 0, 0]]) is None  # chance agreement is 1
    assert fleiss_kappa([[1, 0, 0]]) is None  # one rater: no agreement to measure


def _j(annotator, pair, order, pref):
    choice = "equal" if pref == "equal" else ("1" if (pref == "A") == (order == 0) else "2")
    return Judgment(annotator, pair, order, 0, choice, "t")


def test_summarize_by_hand():
    prefs = {  # annotator: {pair: (preferred in order 0, preferred in order 1)}
        "x": {1: ("A", "A"), 2: ("B", "B"), 3: ("A", "B")},  # win, lose, tie
        "y": {1: ("A", "A"), 2: ("equal", "B"), 3: ("equal", "equal")},  # win, tie, tie
    }
    judgments = [_j(a, p, o, pp[o]) for a, per in prefs.items() for p, pp in per.items()
                 for o in (0, 1)]
    judgments.append(_j("y", 4, 1, "A"))  # one order only: not counted
    s = summarize(judgments, n_pairs=4)
    assert {k: s["annotators"]["x"][k] for k in ("win", "tie", "lose", "n")} == \
        {"win": 1, "tie": 1, "lose": 1, "n": 3}
    assert {k: s["annotators"]["y"][k] for k in ("win", "tie", "lose", "n", "incomplete")} \
        == {"win": 1, "tie": 2, "lose": 0, "n": 3, "incomplete": 1}
    assert {k: s["pooled"][k] for k in ("win", "tie", "lose", "n")} == \
        {"win": 2, "tie": 3, "lose": 1, "n": 6}
    assert s["pooled"]["win_rate"] == pytest.approx(2 / 6)
    assert s["agreement"]["measure"] == "Fleiss' kappa"
    assert s["agreement"]["value"] == pytest.approx(5 / 11)  # the table of the hand example
    assert s["agreement"]["n_pairs"] == 3


# ------------------------------------------------------------------ schedules ---------

@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_schedule_shows_every_pair_in_both_orders_never_back_to_back(n):
    for seed in ("alice", "bob", "carol", "x" * 20):
        s = schedule(n, seed)
        assert len(s) == 2 * n
        assert sorted(s) == sorted((i, o) for i in range(1, n + 1) for o in (0, 1))
        if n > 1:
            assert all(a[0] != b[0] for a, b in zip(s, s[1:])), s
        assert schedule(n, seed) == s  # an annotator who comes back gets the same one


def test_schedules_differ_between_annotators_and_orders_are_mixed():
    a, b = schedule(50, "alice"), schedule(50, "bob")
    assert a != b
    firsts = [order for _, order in a[:50]]
    assert 10 < sum(firsts) < 40  # A is not always Response 1 on first showing


# --------------------------------------------------------------- files, matching ------

def test_match_by_query_and_count(tmp_path):
    a, b, texts = make_files(tmp_path, 4, extra_a=[("only in A", "x")],
                             extra_b=[("only in B", "y"), ("also only B", "z")])
    m = match(str(a), str(b))
    assert [p.query for p in m.pairs] == list(texts)  # in A's order
    assert all((p.response_a, p.response_b) == texts[p.query] for p in m.pairs)
    assert (m.n_a, m.n_b, m.only_a, m.only_b) == (5, 6, 1, 2)
    assert "matched 4 queries" in m.describe("a", "b")


def test_labels_from_stems_or_folders(tmp_path):
    assert labels("x/base.jsonl", "x/tuned.jsonl") == ("base", "tuned")
    assert labels("run1/eval_samples.jsonl", "run2/eval_samples.jsonl") == ("run1", "run2")


def test_database_remembers_its_files(tmp_path):
    a, b, db = make_db(tmp_path)
    m = match(str(a), str(b))
    assert create_or_check(str(db), m, str(a), str(b), "a", "b") is False  # same: go on
    c = write_samples(tmp_path / "c.jsonl", [(p.query, p.response_b + "!") for p in m.pairs])
    with pytest.raises(UserError, match="another pair of files"):
        create_or_check(str(db), match(str(a), str(c)), str(a), str(c), "a", "c")
    with pytest.raises(UserError, match="another pair of files"):  # swapped: A is now B
        create_or_check(str(db), match(str(b), str(a)), str(b), str(a), "b", "a")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM pairs").fetchone()[0] == 6


# ------------------------------------------------------------------ the server --------

def test_page_source_never_names_a_model_or_file(tmp_path):
    a, b, db = make_db(tmp_path, n=3)
    store = Store(db)
    forbidden = [SECRET_DIR_A, SECRET_DIR_B, SECRET_FILE_A, SECRET_FILE_B,
                 store.meta["label_a"], store.meta["label_b"], "zeta", "kappa-model",
                 "omega", "sigma", str(tmp_path)]
    assert store.meta["label_a"] == "zeta-model-secret"  # the labels are these names
    pages = []
    with Running(db) as server:
        base = server.url()
        for path in ("", "static/annotate.js", "static/annotate.css", "judge?name=",
                     "nope"):
            pages.append(fetch(base + path)[1])
        orders = []
        while True:
            status, html = fetch(base + "judge?name=eve")
            pages.append(html)
            f = judge_page_fields(html)
            if f["position"] is None:
                assert "All 6 judgments done" in html
                break
            orders.append(f["first"].startswith("First"))
            status, html = fetch(base + "judge", {"name": "eve", "position": f["position"],
                                                 "key": f["key"], "choice": "1"})
            assert status == 200
            pages.append(html)
    assert sorted(orders) == [False] * 3 + [True] * 3  # both orders were among the pages
    for page in pages:
        for name in forbidden:
            assert name.lower() not in page.lower(), name
        for word in ("response_a", "response_b", "model", "pair", "order"):
            assert not re.search(rf"\b{word}\b", page, re.I), word


def test_security_headers_loopback_host_and_form_key(tmp_path):
    _, _, db = make_db(tmp_path, n=2)
    client = create_app(db).test_client()
    r = client.get("/judge?name=amy")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # another Host name (DNS rebinding from a web page) is refused
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 403
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    f = judge_page_fields(r.get_data(as_text=True))
    post = {"name": "amy", "position": f["position"], "choice": "2"}
    assert client.post("/judge", data={**post, "key": "0" * 32}).status_code == 403
    assert client.post("/judge", data={**post, "key": f["key"], "choice": "3"}).status_code \
        == 400
    assert client.post("/judge", data={**post, "key": f["key"], "position": "99"}) \
        .status_code == 400
    assert Store(db).judgments() == []
    assert client.post("/judge", data={**post, "key": f["key"]}).status_code == 303
    assert client.post("/judge", data={**post, "key": f["key"], "choice": "1"}) \
        .status_code == 303  # a double submission ...
    [j] = Store(db).judgments()
    assert (j.annotator, j.choice, j.position) == ("amy", "2", int(f["position"]))  # ... is ignored


def test_token_is_required_when_given(tmp_path):
    _, _, db = make_db(tmp_path, n=2)
    token = "t0k3n-" + "x" * 20
    client = create_app(db, token).test_client()
    assert client.get("/").status_code == 403
    assert client.get("/static/annotate.js").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    r = client.get(f"/judge?name=ann&token={token}")
    assert r.status_code == 303 and r.headers["Location"] == "/judge?name=ann"
    assert "HttpOnly" in r.headers["Set-Cookie"]
    assert client.get("/judge?name=ann").status_code == 200  # the cookie carries it now
    assert create_app(db, token).test_client().post(
        "/judge", data={"name": "ann", "position": "0", "choice": "1"}).status_code == 403
    # with a token, any Host name is served (the point of --host)
    assert client.get(f"/?token={token}", headers={"Host": "10.1.2.3:8765"}).status_code \
        == 303


def test_concurrent_annotators_lose_no_judgment(tmp_path):
    """Six annotators, each in a thread of its own, judge all 2 x 12 pairs at once through
    the real threaded server: every judgment is a row."""
    _, _, db = make_db(tmp_path, n=12)
    names = [f"ann{i}" for i in range(6)]
    errors = []
    chosen = {}

    def annotate(name, base):
        try:
            for step in range(24):
                f = judge_page_fields(fetch(f"{base}judge?name={name}")[1])
                choice = ("1", "2", "equal")[(step + len(name)) % 3]
                chosen[(name, int(f["position"]))] = choice
                status, _ = fetch(base + "judge", {"name": name, "position": f["position"],
                                                  "key": f["key"], "choice": choice})
                assert status == 200
            assert "All 24 judgments done" in fetch(f"{base}judge?name={name}")[1]
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    with Running(db) as server:
        threads = [threading.Thread(target=annotate, args=(n, server.url())) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[0]
    rows = Store(db).judgments()
    assert len(rows) == 6 * 24
    assert {(j.annotator, j.position): j.choice for j in rows} == chosen


# --------------------------------------------------------------- CLI: bad input -------

def test_serve_bad_inputs_one_line_exit_2_and_no_database(tmp_path):
    a, b, _ = make_files(tmp_path, 3)
    db = tmp_path / "new.sqlite"
    other = write_samples(tmp_path / "other.jsonl", [("unrelated", "x"), ("also", "y")])
    line = one_error_line(run_ple("annotate", "serve", a, other, "--db", db))
    assert "have no query in common (3 and 2 queries)" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "response": "r"}\n{"query": oops}\n')
    assert f"{bad}:2: malformed JSON" in one_error_line(
        run_ple("annotate", "serve", a, bad, "--db", db))
    bad.write_text('{"query": "q", "response": "r"}\n\n{"query": "q2"}\n')
    assert f"{bad}:3: record has no `response` field" in one_error_line(
        run_ple("annotate", "serve", bad, b, "--db", db))
    bad.write_text('{"query": "q", "response": 3}\n')
    assert f"{bad}:1: field `response` must be a string" in one_error_line(
        run_ple("annotate", "serve", bad, b, "--db", db))
    bad.write_text('{"query": "q", "response": "r"}\n{"query": "q", "response": "s"}\n')
    assert f"{bad}:2: query repeats the one at {bad}:1" in one_error_line(
        run_ple("annotate", "serve", a, bad, "--db", db))
    assert "does not exist" in one_error_line(
        run_ple("annotate", "serve", a, tmp_path / "nope.jsonl", "--db", db))
    assert "--port 70000" in one_error_line(
        run_ple("annotate", "serve", a, b, "--db", db, "--port", "70000"))
    assert not db.exists()
    assert "is a directory" in one_error_line(
        run_ple("annotate", "serve", a, b, "--db", tmp_path))


def test_serve_without_flask_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    a, b, _ = make_files(tmp_path, 3)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "flask" else real(name, *rest))
    db = tmp_path / "new.sqlite"
    line = one_error_line(run_ple("annotate", "serve", a, b, "--db", db))
    assert "needs Flask: pip install 'ple[annotate]'" in line
    assert not db.exists()


def test_serve_refuses_a_database_of_other_files(tmp_path):
    a, b, db = make_db(tmp_path, n=3)
    before = db.read_bytes()
    c = write_samples(tmp_path / "c.jsonl", [(p.query, "changed")
                                             for p in Store(db).pairs().values()])
    line = one_error_line(run_ple("annotate", "serve", a, c, "--db", db))
    assert f"--db {db} holds judgments of another pair of files" in line
    assert SECRET_FILE_A in line and "3 pairs" in line
    assert db.read_bytes() == before
    notours = tmp_path / "other.sqlite"
    sqlite3.connect(notours).execute("CREATE TABLE t (x)")
    before = notours.read_bytes()
    assert "did not make" in one_error_line(
        run_ple("annotate", "serve", a, b, "--db", notours))
    assert notours.read_bytes() == before  # not even switched to WAL
    text = tmp_path / "text.sqlite"
    text.write_text("hello, not a database at all " * 10)
    assert "not an SQLite database" in one_error_line(
        run_ple("annotate", "serve", a, b, "--db", text))


def test_report_and_export_bad_databases(tmp_path):
    missing = tmp_path / "missing.sqlite"
    for cmd in ("report", "export"):
        assert "does not exist" in one_error_line(run_ple("annotate", cmd, "--db", missing))
    assert not missing.exists()
    text = tmp_path / "t.sqlite"
    text.write_text("not a database " * 20)
    assert "not an SQLite database" in one_error_line(run_ple("annotate", "report", "--db",
                                                              text))
    _, _, db = make_db(tmp_path, n=2)
    line = one_error_line(run_ple("annotate", "report", "--db", db))
    assert "no pair has been judged in both orders yet" in line
    assert not (tmp_path / "annotate_report.json").exists()


# ---------------------------------------------------------- CLI: report, export -------

def test_report_and_export_from_the_cli(tmp_path):
    _, _, db = make_db(tmp_path, n=3)
    store = Store(db)
    plan = {  # annotator: {pair: (choice when A is Response 1, choice when B is)}
        "ann": {1: ("1", "2"), 2: ("2", "1"), 3: ("1", "1")},  # win, lose, tie
        "bob": {1: ("1", "2"), 2: ("equal", "1"), 3: ("1", "2")},  # win, lose... see below
    }
    for name, per in plan.items():
        for pair, choices in per.items():
            for order in (0, 1):
                store.add(name, pair, order, 0, choices[order])
    # bob: pair 2 = (equal, B) -> tie; pair 3 = (A, A) -> win
    out = tmp_path / "rep"
    r = run_ple("annotate", "report", "--db", db, "--output-dir", out, "--label-a", "tuned")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "annotate_report.json").read_text())
    assert (out / "annotate_report.png").read_bytes()[:4] == b"\x89PNG"
    counts = {n: [s[k] for k in ("win", "tie", "lose")] for n, s in report["annotators"].items()}
    assert counts == {"ann": [1, 1, 1], "bob": [2, 1, 0]}
    assert [report["pooled"][k] for k in ("win", "tie", "lose")] == [3, 2, 1]
    # table: pair 1 [2 win], pair 2 [lose, tie], pair 3 [tie, win]; P-bar = 1/3,
    # p = (3/6, 2/6, 1/6), P-e = 14/36, kappa = (1/3 - 7/18) / (11/18) = -1/11
    assert report["agreement"]["measure"] == "Fleiss' kappa"
    assert report["agreement"]["value"] == pytest.approx(-1 / 11)
    assert report["model_a"]["label"] == "tuned"
    assert report["model_b"]["label"] == "kappa-model-secret"
    assert "pooled" in r.stdout and "Fleiss' kappa = -0.091" in r.stdout

    csv_path = tmp_path / "j.csv"
    r = run_ple("annotate", "export", "--db", db, "-o", csv_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) == 12
    assert {(x["annotator"], x["pair"], x["order"], x["choice"], x["preferred"])
            for x in rows if x["pair"] == "2" and x["annotator"] == "bob"} == \
        {("bob", "2", "A-B", "equal", "equal"), ("bob", "2", "B-A", "1", "B")}
    assert run_ple("annotate", "export", "--db", db).stdout == csv_path.read_text()


@pytest.mark.slow
def test_cli_serve_prints_the_link_needs_the_token_and_stops_on_ctrl_c(tmp_path):
    a, b, _ = make_files(tmp_path, 3)
    db = tmp_path / "j.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ple.cli", "annotate", "serve", str(a), str(b), "--db",
         str(db), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a suite started in the background (`make test &`) ignores SIGINT, and a child
        # inherits that; a user at a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Open "):
                break
        assert lines and lines[-1].startswith("Open "), (lines, proc.poll())
        assert "matched 3 queries" in lines[0]
        url = lines[-1].split()[1]
        token = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["token"][0]
        assert len(token) >= 16
        bare = url.split("?")[0]
        assert fetch(bare)[0] == 403
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, html = fetch(url.replace("/?", "/judge?name=zoe&"), opener=opener)
        assert status == 200 and "0 of 6 done" in html
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert Store(db).n_pairs == 3


@pytest.mark.slow
def test_serve_on_a_port_in_use_is_one_line(tmp_path):
    import socket

    a, b, _ = make_files(tmp_path, 2)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ple.cli", "annotate", "serve", str(a),
                            str(b), "--db", str(tmp_path / "j.sqlite"), "--port", str(port)],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines() == [
        f"ple: error: cannot listen on 127.0.0.1:{port} (Address already in use)"]

"""`ple annotate` in a real browser: Debian's headless Chromium driven by Playwright.

An annotator enters a name, judges every pair with clicks and keys, leaves and comes back;
the test then checks the SQLite rows and the report against the choices it made. Also:
model output holding <script> and <img onerror> shows as text and runs nothing, and two
annotators in two browser contexts at once lose no judgment.

`python tests/test_annotate_browser.py --screenshots docs/images` remakes the pictures in
docs/annotate.md.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_ple  # noqa: E402
from test_annotate import (  # noqa: E402
    SECRET_DIR_A, SECRET_DIR_B, SECRET_FILE_A, SECRET_FILE_B, Running, make_db)

from ple.annotate.store import Store  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
# The page after judgment n: the done page, or the next pair with its keys listening.
# Each judgment loads the next page: while it is still being parsed, `progress` may not
# exist yet (seen under load), which must read as "not ready", not as an error.
READY = ("n => document.getElementById('done') || (document.getElementById('progress')"
         "?.value == n && document.documentElement.dataset.keys == 'ready')")
LOADED = ("() => document.getElementById('done') || "
          "document.documentElement.dataset.keys == 'ready'")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is absent (Debian's chromium package; "
                                        f"`make test` installs it)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=TIMEOUT_MS)
        yield b
        b.close()


def new_page(browser):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


def start(page, base, name):
    """Open the page and enter a name, as an annotator does."""
    page.goto(base)
    page.fill("#name", name)
    page.press("#name", "Enter")
    page.wait_for_function(LOADED)


# What the test annotator wants for each pair: "A"/"B" = prefer that model's response in
# both orders; "first" = always click Response 1 (a position-biased annotator); "equal";
# "A-then-equal" = prefer A on first sight, "equal" on the second.
INTENT = ["A", "B", "first", "equal", "A-then-equal", "A"]
EXPECTED = {"win": 2, "tie": 3, "lose": 1}  # the rule applied by hand to INTENT


def test_annotator_judges_every_pair_with_clicks_and_keys(browser, tmp_path):
    _, _, db = make_db(tmp_path, n=len(INTENT))
    store = Store(db)
    pairs = {p.query: p for p in store.pairs().values()}
    intent = {p.query: INTENT[p.id - 1] for p in pairs.values()}
    made = {}  # (query, A shown first?) -> choice
    seen = []
    with Running(db) as server:
        context, page = new_page(browser)
        start(page, server.url(), "alice")
        step = 0
        while True:
            if step == 4:  # leave, and come back in a new browser where we stopped
                context.close()
                context, page = new_page(browser)
                start(page, server.url(), "alice")
                assert page.inner_text("#progress-text") == "4 of 12 done"
                assert page.get_attribute("#progress", "value") == "4"
            if page.query_selector("#done"):
                break
            assert page.get_attribute("#progress", "max") == "12"
            assert page.get_attribute("#progress", "value") == str(step)
            query = page.inner_text("#query")
            first = page.inner_text("#response-1")
            pair = pairs[query]
            a_first = first == pair.response_a
            assert first == (pair.response_a if a_first else pair.response_b)
            assert page.inner_text("#response-2") == (pair.response_b if a_first
                                                      else pair.response_a)
            want = intent[query]
            second_sight = any(q == query for q, _ in seen)
            if want in ("A", "B"):
                choice = "1" if (want == "A") == a_first else "2"
            elif want == "first":
                choice = "1"
            elif want == "equal":
                choice = "equal"
            else:
                choice = "equal" if second_sight else ("1" if a_first else "2")
            seen.append((query, a_first))
            made[(query, a_first)] = choice
            if step % 2:  # keys on odd steps, clicks on even ones
                page.keyboard.press({"1": "1", "2": "2", "equal": "e"}[choice])
            else:
                page.click({"1": "#choose-1", "2": "#choose-2",
                            "equal": "#choose-equal"}[choice])
            step += 1
            page.wait_for_function(READY, arg=step)
        assert page.inner_text("#done").startswith("All 12 judgments done")
        context.close()

    # both orders of every pair, never back to back
    assert len(seen) == 12
    assert sorted(seen) == sorted((q, o) for q in pairs for o in (True, False))
    assert all(x[0] != y[0] for x, y in zip(seen, seen[1:]))

    # the rows are the choices made
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT annotator, pair, ord, choice, position, time FROM judgments "
                        "ORDER BY position").fetchall()
    assert len(rows) == 12 and {r[0] for r in rows} == {"alice"}
    by_id = {p.id: p.query for p in pairs.values()}
    assert {(by_id[r[1]], r[2] == 0): r[3] for r in rows} == made
    assert [r[4] for r in rows] == list(range(12))
    assert all(r[5].endswith("+00:00") for r in rows)

    result = run_ple("annotate", "report", "--db", db)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "annotate_report.json").read_text())
    alice = report["annotators"]["alice"]
    assert {k: alice[k] for k in EXPECTED} == EXPECTED
    assert {k: report["pooled"][k] for k in EXPECTED} == EXPECTED


XSS_QUERY = 'Say <script>window.__pwned = "query"; alert(1)</script> please'
XSS_A = '<script>window.__pwned = "a"; alert(1)</script>Here is <b>bold</b> text'
XSS_B = 'An image: <img src=x onerror="window.__pwned = \'b\'; alert(2)"> and &amp; done'


def test_model_output_with_html_runs_nothing_and_shows_literally(browser, tmp_path):
    _, _, db = make_db(tmp_path, texts={XSS_QUERY: (XSS_A, XSS_B),
                                        "plain": ("plain one", "plain two")})
    dialogs = []
    with Running(db) as server:
        context, page = new_page(browser)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        start(page, server.url(), "mallory")
        shown, sources = set(), []
        for step in range(4):
            sources.append(page.content())
            text = page.inner_text("#query")
            if text == XSS_QUERY:
                first, second = page.inner_text("#response-1"), page.inner_text("#response-2")
                assert {first, second} == {XSS_A, XSS_B}  # the text, literally
                shown.add(first)
                for sel in ("#query", "#response-1", "#response-2"):
                    assert page.locator(f"{sel} script, {sel} img, {sel} b").count() == 0
                assert page.locator("img").count() == 0
                assert page.locator("script").count() == 1  # our own annotate.js only
                html = page.content()
                assert "&lt;script&gt;window.__pwned" in html
            assert page.evaluate("typeof window.__pwned") == "undefined"
            page.keyboard.press("2")
            page.wait_for_function(READY, arg=step + 1)
        assert shown == {XSS_A, XSS_B}  # seen in both orders
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert dialogs == []
        # no page names a model or its file
        sources.append(page.content())
        meta = Store(db).meta
        for name in (SECRET_DIR_A, SECRET_DIR_B, SECRET_FILE_A, SECRET_FILE_B,
                     meta["label_a"], meta["label_b"], meta["file_a"], meta["file_b"]):
            assert not any(name in source for source in sources), name
        context.close()


def test_two_annotators_at_once_lose_no_judgment(tmp_path):
    """Two browser contexts judge all pairs concurrently (async Playwright, so neither
    waits for the other); every judgment of both is a row."""
    n = 8
    _, _, db = make_db(tmp_path, n=n)

    async def annotate(browser, base, name, keys):
        context = await browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        await page.goto(base)
        await page.fill("#name", name)
        await page.click("#start")
        await page.wait_for_function(LOADED)
        for step in range(2 * n):
            await page.keyboard.press(keys[step % len(keys)])
            await page.wait_for_function(READY, arg=step + 1)
        done = await page.inner_text("#done")
        await context.close()
        return done

    async def main(base):
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                              timeout=TIMEOUT_MS)
            try:
                return await asyncio.wait_for(asyncio.gather(
                    annotate(browser, base, "bea", "12e"),
                    annotate(browser, base, "cal", "2e21")), timeout=60)
            finally:
                await browser.close()

    result = {}
    with Running(db) as server:
        # a thread of its own: the sync Playwright of the other tests owns this one's loop
        t = threading.Thread(target=lambda: result.update(done=asyncio.run(main(server.url()))))
        t.start()
        t.join(timeout=90)
    assert "done" in result, "the two annotators did not finish"
    assert all(d.startswith(f"All {2 * n} judgments done") for d in result["done"])
    rows = Store(db).judgments()
    assert len(rows) == 2 * 2 * n
    for name, keys in (("bea", "12e"), ("cal", "2e21")):
        mine = sorted((j for j in rows if j.annotator == name), key=lambda j: j.position)
        assert {(j.pair, j.order) for j in mine} == {(p, o) for p in range(1, n + 1)
                                                      for o in (0, 1)}
        expected = [{"e": "equal"}.get(k, k) for k in (keys * n)[:2 * n]]
        assert [j.choice for j in mine] == expected


# ------------------------------------------------------------ pictures for the docs ---

DEMO = {
    "How do I get a red wine stain out of a wool sweater?":
        ("Blot (don't rub) as much wine as you can with a clean cloth. Then dab the stain "
         "with cold water mixed with a little wool detergent, working from the edge "
         "inward, and rinse with cold water. Avoid hot water and heat: they set the stain "
         "and shrink wool. Dry it flat on a towel.",
         "Put it in the washing machine on the hottest cycle with bleach, that will get "
         "anything out."),
    "Write a one-line summary of why the sky is blue.":
        ("Sunlight scatters off air molecules, and blue light scatters far more than red "
         "(Rayleigh scattering), so the sky looks blue.",
         "Because the ocean reflects onto it."),
}


def screenshots(out: Path) -> None:
    """docs/images/annotate-page.png and annotate-report.png. The page shows two demo
    responses; the chart is of simulated judgments (five annotators, 50 pairs) and shows
    what a report looks like, not a measurement."""
    import random
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp())
    _, _, db = make_db(tmp, texts=DEMO)
    with Running(db) as server, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = b.new_page(viewport={"width": 1100, "height": 430})
        start(page, server.url(), "annotator-1")
        page.keyboard.press("1")
        page.wait_for_function(READY, arg=1)
        page.screenshot(path=str(out / "annotate-page.png"))
        b.close()

    sim = tmp / "sim"
    texts = {f"query {k}": (f"a{k}", f"b{k}") for k in range(1, 51)}
    _, _, db = make_db(sim, texts=texts)
    store = Store(db)
    rng = random.Random(0)
    for a in range(1, 6):
        for pair in range(1, 51):
            leaning = rng.random()
            for order in (0, 1):
                r = rng.random()
                pref = "A" if r < 0.45 + 0.3 * leaning else ("equal" if r < 0.85 else "B")
                choice = "equal" if pref == "equal" else \
                    ("1" if (pref == "A") == (order == 0) else "2")
                store.add(f"annotator {a}", pair, order, 0, choice)
    # Simulated judgments: the labels say so, so the picture is never mistaken for a result.
    result = run_ple("annotate", "report", "--db", db, "--label-a", "model A",
                     "--label-b", "model B")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    shutil.copy(sim / "annotate_report.png", out / "annotate-report.png")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--screenshots"] or len(sys.argv) != 3:
        sys.exit("usage: python tests/test_annotate_browser.py --screenshots DIR")
    target = Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    screenshots(target)

"""`ple annotate serve | export | report`."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import secrets
import sys

from ple.errors import UserError


def add_arguments(sub) -> None:
    """Add `annotate` to the subparsers `sub` of the ple command."""
    annotate = sub.add_parser("annotate", help="blind pairwise human evaluation in the "
                              "browser: `ple annotate serve | export | report`")
    commands = annotate.add_subparsers(dest="annotate_command", required=True)

    serve = commands.add_parser(
        "serve", help="serve the judging page for two models' eval samples",
        description="Serve a local web page where annotators judge, blind, which of two "
        "models' responses to the same query is better. Every pair is shown twice, in both "
        "orders. Judgments go to --db (SQLite). Runs until Ctrl-C.")
    serve.add_argument("file_a", metavar="A.jsonl", help="model A's eval_samples.jsonl "
                       "(records with `query` and `response`)")
    serve.add_argument("file_b", metavar="B.jsonl", help="model B's eval_samples.jsonl")
    serve.add_argument("--db", required=True, help="SQLite file for the judgments; made on "
                       "first use, and refused later for other files")
    serve.add_argument("--host", default=None, help="address to listen on (default "
                       "127.0.0.1, loopback only); when given, the page needs the access "
                       "token in the printed link")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks "
                       "a free one)")
    serve.add_argument("--token", default=None, help="the access token to require (default: "
                       "a random one, when --host is given)")

    export = commands.add_parser("export", help="write the judgments as CSV")
    export.add_argument("--db", required=True)
    export.add_argument("-o", "--output", default="-", help="CSV file (default: stdout)")

    report = commands.add_parser(
        "report", help="win/tie/lose per annotator and pooled, Fleiss' kappa, chart and JSON")
    report.add_argument("--db", required=True)
    report.add_argument("--output-dir", default=None, help="where annotate_report.json and "
                        "annotate_report.png go (default: the database's folder)")
    report.add_argument("--label-a", default=None, help="model A's name in the report "
                        "(default: from its file name)")
    report.add_argument("--label-b", default=None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args, on_ready=None) -> None:
    if importlib.util.find_spec("flask") is None:
        raise UserError("ple annotate serve needs Flask: pip install 'ple[annotate]'")
    from ple.annotate.app import Server, create_app
    from ple.evaluation.pairwise import labels, match
    from ple.annotate.store import create_or_check

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be between 0 and 65535")
    if args.token is not None and len(args.token) < 16:
        raise UserError("--token: use at least 16 characters (or leave it out for a random "
                        "one)")
    matched = match(args.file_a, args.file_b)
    label_a, label_b = labels(args.file_a, args.file_b)
    new = create_or_check(args.db, matched, args.file_a, args.file_b, label_a, label_b)
    token = None
    if args.host is not None:
        token = args.token or secrets.token_urlsafe(24)
    elif args.token is not None:
        raise UserError("--token needs --host (on loopback alone no token is asked)")
    host = args.host or "127.0.0.1"
    try:
        server = Server(create_app(args.db, token), host, args.port)
    except OSError as e:
        why = str(e.strerror or e).split(" (while attempting")[0]
        raise UserError(f"cannot listen on {host}:{args.port} ({why})") from None
    print(f"ple annotate: {matched.describe(args.file_a, args.file_b)}")
    print(f"Judgments go to {args.db} ({'new' if new else 'continuing'}); each annotator "
          f"judges {2 * len(matched.pairs)} (every pair in both orders).")
    if token and not _is_loopback(host):
        print(f"Listening on {host}:{server.port}, reachable from other machines: share the "
              f"link only with your annotators.")
    print(f"Open {server.url(token)}  (Ctrl-C to stop)", flush=True)
    if on_ready is not None:
        on_ready(server)
    try:
        server.serve_forever()  # returns on Ctrl-C (werkzeug's server catches it)
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    print("\nple annotate: stopped; every submitted judgment is saved.")


def cmd_export(args) -> None:
    from ple.annotate.store import Store

    store = Store(args.db)
    if args.output == "-":
        n = store.export_csv(sys.stdout)
        print(f"ple annotate: exported {n} judgments", file=sys.stderr)
        return
    try:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            n = store.export_csv(f)
    except OSError as e:
        raise UserError(f"--output {args.output}: cannot write ({e.strerror})") from None
    print(f"Exported {n} judgments to {args.output}")


def cmd_report(args) -> None:
    from ple.annotate.report import build_report, describe

    report, json_path, png_path = build_report(args.db, args.output_dir, args.label_a,
                                               args.label_b)
    print(describe(report))
    print(f"Wrote {json_path} and {png_path}")


def run(args: argparse.Namespace) -> None:
    {"serve": cmd_serve, "export": cmd_export, "report": cmd_report}[args.annotate_command](args)

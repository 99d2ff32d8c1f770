"""`shiftsweep`: the command-line client of the REST API, and `serve` to run the API itself.

    shiftsweep serve --port 8000
    shiftsweep submit configs/sweeps/demo.yaml          # or: --preset demo --set epochs=2 --set seeds=[0,1]
    shiftsweep watch <id>; shiftsweep tables <id> ood --format latex --out table1.tex
    shiftsweep suggest <id>; shiftsweep extend <id> --set seeds=[0,1,2]   # grow an ended sweep's grid

Every command except `serve` speaks HTTP only. The server and token come from --url / --token or the
environment (SHIFTSWEEP_URL, SHIFTSWEEP_API_TOKEN). Server errors are printed as the server wrote them,
with control characters escaped (as is all the server sends).
Exit status: 0 success; 1 an error from the server, or a watched sweep that failed; 2 bad usage;
3 a watched sweep that was cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from api import is_loopback
from api.client.rest import DEFAULT_URL, ApiClient, ClientError
from api.client.terminal import safe, say
from api.client.watch import progress_line, watch

RESULT_NAMES = ("trials", "epochs", "probe")
EXIT_FOR_STATE = {"finished": 0, "failed": 1, "cancelled": 3}


class UsageError(Exception):
    """Bad command-line input; exit status 2."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs; each value is read as YAML, so `3`, `0.5`, `[0, 1]`, `{cpus: 2}` keep their types."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise UsageError(f"--set {key}: the value is not valid YAML: {e}") from None
    return out


# ---- commands ------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.server.main import create_app
    from api.server.registry import RegistryUnavailableError, is_postgres_url, open_registry
    from api.server.settings import get_settings

    overrides: dict[str, Any] = {}
    for name in ("storage", "registry", "ray_address"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        settings = get_settings(**overrides)
    except ValueError as e:
        raise UsageError(f"invalid settings: {e}") from None
    if not is_loopback(args.host) and settings.api_token is None:
        raise UsageError(
            f"refusing to listen on {args.host} without a token: set SHIFTSWEEP_API_TOKEN, or serve on 127.0.0.1"
        )
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and not is_postgres_url(settings.registry or ""):
        print(
            f"note: {args.workers} API processes share the SQLite registry {settings.registry}; that is safe on a "
            "local disk of one host only (across hosts or on a network volume, use postgresql://)",
            file=sys.stderr,
        )
    try:  # the registry is opened here, so that an unreachable one is said plainly, once
        if args.workers == 1:
            app = create_app(settings)
        else:
            open_registry(settings.registry or "")  # each worker process builds its own app
    except RegistryUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        return 0
    # Each worker process builds its own app from the environment, so the overrides travel there.
    for name, value in overrides.items():
        os.environ[f"SHIFTSWEEP_{name.upper()}"] = str(value)
    uvicorn.run(
        "api.server.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


def cmd_submit(client: ApiClient, args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set or [])
    if args.preset and args.spec:
        raise UsageError("give a spec file or --preset, not both")
    if args.preset:
        body: dict[str, Any] = {"preset": args.preset, "overrides": overrides}
    elif args.spec:
        path = Path(args.spec)
        if not path.is_file():
            raise UsageError(f"spec file {path} does not exist")
        try:
            body = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise UsageError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(body, dict):
            raise UsageError(f"{path} must hold a mapping of spec fields")
        body.update(overrides)
    else:
        raise UsageError("give a spec file or --preset NAME")
    sweep = client.submit(body, idempotency_key=args.idempotency_key)
    if args.quiet:
        say(sweep["id"])
    else:
        say(f"sweep {sweep['id']} ({sweep['name']}): {sweep['status']}, {sweep['total_trials']} trials")
        if sweep.get("dashboard_url"):
            say(f"  Ray job: {sweep['dashboard_url']}")
    if args.watch:
        return _watch(client, sweep["id"], args)
    return 0


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.sweeps(limit=args.limit, offset=args.offset, status=args.status)
    if args.json:
        say(json.dumps(page, indent=1))
        return 0
    rows = [(s["id"], s["status"], s["name"], s["created_at"][:19], s.get("job_id") or "") for s in page["data"]]
    header = ("ID", "STATUS", "NAME", "CREATED", "JOB")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        say("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    say(f"{len(rows)} of {page['count']} sweeps")
    return 0


def cmd_status(client: ApiClient, args: argparse.Namespace) -> int:
    sweep = client.sweep(args.sweep_id)
    if args.json:
        say(json.dumps(sweep, indent=1))
        return 0
    say(progress_line(sweep, bar=False))
    say(f"  job {sweep.get('job_id')} ({sweep.get('job_status') or 'not asked'})  {sweep.get('dashboard_url') or ''}")
    say(f"  results: {sweep['results_dir']}")
    for line in sweep.get("history") or []:
        say(f"  {line}")
    if sweep.get("error"):
        say(f"  error: {sweep['error']}")
    return 0


def _watch(client: ApiClient, sweep_id: str, args: argparse.Namespace) -> int:
    try:
        final = watch(lambda: client.sweep(sweep_id), sys.stdout, interval_s=args.interval, timeout_s=args.timeout)
    except TimeoutError as e:
        say(f"error: {e}", file=sys.stderr)
        return 1
    if final.get("error"):
        say(f"error: {final['error']}", file=sys.stderr)
    return EXIT_FOR_STATE.get(final["status"], 1)


def cmd_watch(client: ApiClient, args: argparse.Namespace) -> int:
    return _watch(client, args.sweep_id, args)


def cmd_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    sweep = client.cancel(args.sweep_id)
    say(f"sweep {sweep['id']}: {sweep['status']}")
    return 0


def cmd_resume(client: ApiClient, args: argparse.Namespace) -> int:
    sweep = client.resume(args.sweep_id)
    say(f"sweep {sweep['id']}: {sweep['status']} as job {sweep['job_id']}")
    return 0


def _extended(client: ApiClient, sweep_id: str, changes: dict[str, Any], args: argparse.Namespace) -> int:
    sweep = client.extend(sweep_id, changes)
    grew = sweep["history"][-1] if sweep.get("history") else "nothing added: the trials not yet done run again"
    say(f"sweep {sweep['id']}: {sweep['status']} as job {sweep['job_id']}, {sweep['total_trials']} trials in all")
    say(f"  {grew}")
    return _watch(client, sweep_id, args) if args.watch else 0


def cmd_extend(client: ApiClient, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.file:
        path = Path(args.file)
        try:
            changes = yaml.safe_load(path.read_text()) if path.is_file() else None
        except yaml.YAMLError as e:
            raise UsageError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(changes, dict):
            raise UsageError(f"{path} must be a file holding a mapping of spec fields")
    changes.update(parse_overrides(args.set or []))
    if not changes:
        raise UsageError("say what to add: --set seeds=[0,1,2], or --file with spec fields (see `shiftsweep suggest`)")
    return _extended(client, args.sweep_id, changes, args)


def cmd_suggest(client: ApiClient, args: argparse.Namespace) -> int:
    found = client.suggestions(args.sweep_id)
    if args.json:
        say(json.dumps(found, indent=1))
        return 0
    if not found["data"]:
        say(f"sweep {args.sweep_id}: nothing to suggest (no edge LRs, intervals apart, no failed trials)")
        return 0
    for item in found["data"]:
        say(f"- {item['kind']}: {item['reason']}")
    sets = " ".join(f"--set {k}={json.dumps(v, separators=(',', ':'))}" for k, v in found["extension"].items())
    say(f"together: +{found['trials_added']} trials")
    if args.extend:
        return _extended(client, args.sweep_id, found["extension"], args)
    say(f"to run them: shiftsweep suggest {args.sweep_id} --extend   (or: shiftsweep extend {args.sweep_id} {sets})")
    return 0


def _print_listing(kind: str, listing: dict[str, Any]) -> int:
    """What `tables` and `plot` print without a name: the names the server offers, and their formats."""
    say(f"{kind}: " + ", ".join(listing["data"]))
    say("formats: " + ", ".join(listing["formats"]))
    return 0


def cmd_tables(client: ApiClient, args: argparse.Namespace) -> int:
    if args.name is None:
        return _print_listing("tables", client.tables(args.sweep_id))
    content = client.table(args.sweep_id, args.name, args.format)
    if args.out:
        Path(args.out).write_bytes(content)
        say(f"wrote {args.out} ({len(content)} bytes)")
    elif args.format == "parquet":
        raise UsageError("parquet is binary: give --out FILE")
    else:
        sys.stdout.write(safe(content.decode(errors="replace")))
    return 0


def cmd_download(client: ApiClient, args: argparse.Namespace) -> int:
    out = Path(args.out or args.sweep_id)
    out.mkdir(parents=True, exist_ok=True)
    for which in args.which or RESULT_NAMES:
        path = out / f"{which}.parquet"
        path.write_bytes(client.results(args.sweep_id, which))
        say(f"wrote {path}")
    return 0


def cmd_report(client: ApiClient, args: argparse.Namespace) -> int:
    out = Path(args.out or f"{args.sweep_id}-report.html")
    out.write_bytes(client.report(args.sweep_id))
    say(f"wrote {out} (open it in a browser; the live page is GET /api/v1/sweeps/{args.sweep_id}/report)")
    return 0


def cmd_plot(client: ApiClient, args: argparse.Namespace) -> int:
    if args.name is None:
        return _print_listing("plots", client.plots(args.sweep_id))
    out = Path(args.out or f"{args.sweep_id}-{args.name}.{args.format}")
    out.write_bytes(client.plot(args.sweep_id, args.name, args.format))
    say(f"wrote {out}")
    return 0


# ---- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftsweep", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=os.environ.get("SHIFTSWEEP_URL", DEFAULT_URL), help="the service (SHIFTSWEEP_URL)")
    p.add_argument(
        "--token", default=os.environ.get("SHIFTSWEEP_API_TOKEN"), help="bearer token (SHIFTSWEEP_API_TOKEN)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the REST API (uvicorn)")
    s.add_argument("--host", default="127.0.0.1", help="beyond localhost only with SHIFTSWEEP_API_TOKEN set")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--storage", help="results root (SHIFTSWEEP_STORAGE)")
    s.add_argument(
        "--registry", help="SQLite registry file, or postgresql:// URL for several API processes (SHIFTSWEEP_REGISTRY)"
    )
    s.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers); one registry for all")
    s.add_argument("--ray-address", help="Ray dashboard address for jobs (SHIFTSWEEP_RAY_ADDRESS)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    # every argument after `demo` is the demo's own (`shiftsweep demo --help` shows them)
    sub.add_parser("demo", help="run the embedded end-to-end demo (python -m api.demo)", add_help=False)

    s = sub.add_parser("submit", help="submit a sweep: a spec file, or --preset")
    s.add_argument("spec", nargs="?", help="a sweep spec YAML file")
    s.add_argument("--preset", help="a preset name (see GET /catalog)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="replace a top-level spec field (repeatable)")
    s.add_argument("--idempotency-key", help="resubmitting with the same key returns the first sweep")
    s.add_argument("--quiet", action="store_true", help="print only the sweep id")
    s.add_argument("--watch", action="store_true", help="then follow it until it ends")

    s = sub.add_parser("list", help="list sweeps, newest first")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--status", help="only sweeps in this state")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("status", help="one sweep's state and progress")
    s.add_argument("sweep_id")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("watch", help="follow a sweep until it ends")
    s.add_argument("sweep_id")
    for sp in (sub.choices["watch"], sub.choices["submit"]):
        sp.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
        sp.add_argument("--timeout", type=float, help="give up after this many seconds")

    s = sub.add_parser("extend", help="grow an ended sweep: more seeds, LRs, models, datasets or methods")
    s.add_argument("sweep_id")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="replace a top-level spec field (repeatable)")
    s.add_argument("--file", help="a YAML file of spec fields to replace")
    s.add_argument("--watch", action="store_true", help="then follow it until it ends")

    s = sub.add_parser("suggest", help="the extension the sweep's tables call for")
    s.add_argument("sweep_id")
    s.add_argument("--extend", action="store_true", help="submit it as it is")
    s.add_argument("--watch", action="store_true", help="with --extend: then follow it until it ends")
    s.add_argument("--json", action="store_true")
    for sp in (sub.choices["extend"], sub.choices["suggest"]):
        sp.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
        sp.add_argument("--timeout", type=float, help="give up after this many seconds")

    for name, helptext in (("cancel", "stop a sweep (it can be resumed)"), ("resume", "continue an ended sweep")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("sweep_id")

    s = sub.add_parser("tables", help="print or save a comparison table; without NAME, list them")
    s.add_argument("sweep_id")
    s.add_argument("name", nargs="?")
    s.add_argument(
        "--format", default="markdown", help="markdown, csv, latex, json, parquet or text (compact, 120 columns)"
    )
    s.add_argument("--out", help="write to this file instead of the terminal")

    s = sub.add_parser("download", help="download the sweep's Parquet files")
    s.add_argument("sweep_id")
    s.add_argument("--out", help="directory (default: ./<sweep_id>)")
    s.add_argument("--which", nargs="+", choices=RESULT_NAMES, help="default: all three")

    s = sub.add_parser("report", help="save the sweep's HTML report")
    s.add_argument("sweep_id")
    s.add_argument("--out", help="file (default: ./<sweep_id>-report.html)")

    s = sub.add_parser("plot", help="save one of the report's plots as PNG or SVG; without NAME, list them")
    s.add_argument("sweep_id")
    s.add_argument("name", nargs="?")
    s.add_argument("--format", default="png", help="png or svg")
    s.add_argument("--out", help="file (default: ./<sweep_id>-<name>.<format>)")
    return p


COMMANDS = {
    "submit": cmd_submit,
    "list": cmd_list,
    "status": cmd_status,
    "watch": cmd_watch,
    "cancel": cmd_cancel,
    "resume": cmd_resume,
    "extend": cmd_extend,
    "suggest": cmd_suggest,
    "tables": cmd_tables,
    "download": cmd_download,
    "report": cmd_report,
    "plot": cmd_plot,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "demo":
            from api.demo import main as demo_main  # starts its own Ray head and API; imported only when asked

            return demo_main(extra)
        with ApiClient(args.url, args.token) as client:
            return COMMANDS[args.command](client, args)
    except UsageError as e:
        say(f"error: {e}", file=sys.stderr)
        return 2
    except ClientError as e:
        say(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

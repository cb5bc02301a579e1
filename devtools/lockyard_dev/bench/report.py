"""Report writer: the Markdown report, the aligned terminal tables, and the JSON figures.

Every figure is shown as ``median (min–max)`` across passes (only the median after one pass).
The goals section is generated from :mod:`lockyard_dev.bench.goals`; the notes section lists every
skipped backend or peer with its exact error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.bench.goals import GoalCheck
from lockyard_dev.bench.peers import PEERS
from lockyard_dev.bench.results import LOCKYARD, PROBE, Key, Results, Section
from lockyard_dev.bench.stats import (
    OPS_PER_S,
    P50_MS,
    P99_MS,
    VISIBLE_P50_MS,
    VISIBLE_P99_MS,
    Spread,
)
from lockyard_dev.bench.store_ops import SCAN_MATCHES, STORE_OP_NAMES
from lockyard_dev.bench.sync_store import SYNC_STORE_OPS
from lockyard_dev.bench.throughput import THROUGHPUT_OPS, op_name

DASH = "–"
#: What a reader must know to read a backend's figures.
BACKEND_CAVEATS = {
    "memory": "In-process: no network, so these figures are Lockyard's own overhead.",
    "dynamodb": (
        "The server is moto (`lockyard_dev.servers.moto`), a functional emulator in Python"
        " that handles one request at a time and closes the HTTP connection after each: these"
        " figures measure moto, not DynamoDB. Lockyard's DynamoDB locks have no release signal"
        " (they poll), which the contract allows."
    ),
}
STATUS_MARK = {"met": "met", "missed": "MISSED", "info": "info"}


def number(value: float) -> str:
    if math.isnan(value):
        return DASH
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def spread(value: Spread | None, suffix: str = "") -> str:
    if value is None or math.isnan(value.median):
        return DASH
    text = number(value.median) + suffix
    if value.low != value.high:
        text += f" ({number(value.low)}{DASH}{number(value.high)})"
    return text


Table = tuple[list[str], list[list[str]]]


def markdown_table(table: Table) -> str:
    headers, rows = table
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(table: Table) -> str:
    headers, rows = table
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# -- tables ----------------------------------------------------------------------------------
def store_table(results: Results, backend: str) -> Table:
    figures = results.aggregate()
    ratios = results.ratios(P50_MS)
    details = results.details()
    subjects = [
        key[2]
        for key in figures
        if key[0] == backend and key[1] == "store" and key[4] == "sequential"
    ]
    subjects = list(dict.fromkeys(subjects))
    headers = [
        "operation",
        "seq ops/s",
        "seq p50 ms",
        "seq p99 ms",
        "conc ops/s",
        "conc p50 ms",
        "conc p99 ms",
        "raw call",
        "raw seq p50 ms",
        "ratio seq p50",
        "ratio conc p50",
    ]
    rows = []
    for subject in subjects:
        for op in STORE_OP_NAMES:
            seq = figures.get((backend, "store", subject, op, "sequential"))
            conc = figures.get((backend, "store", subject, op, "concurrent"))
            if seq is None and conc is None:
                continue
            raw_key = _raw_key(figures, backend, op, "sequential")
            raw = figures.get(raw_key) if raw_key else None
            label = op if len(subjects) == 1 else f"{op} [{subject}]"
            rows.append(
                [
                    label,
                    spread(_get(seq, OPS_PER_S)),
                    spread(_get(seq, P50_MS)),
                    spread(_get(seq, P99_MS)),
                    spread(_get(conc, OPS_PER_S)),
                    spread(_get(conc, P50_MS)),
                    spread(_get(conc, P99_MS)),
                    details.get(raw_key, DASH) if raw_key else DASH,
                    spread(_get(raw, P50_MS)),
                    spread(ratios.get((backend, subject, op, "sequential")), "x"),
                    spread(ratios.get((backend, subject, op, "concurrent")), "x"),
                ]
            )
    return headers, rows


def _raw_key(figures: dict[Key, dict[str, Spread]], backend: str, op: str, mode: str) -> Key | None:
    for key in figures:
        if key[0] == backend and key[1] == "raw" and key[3] == op and key[4] == mode:
            return key
    return None


def _get(metrics: dict[str, Spread] | None, name: str) -> Spread | None:
    return None if metrics is None else metrics.get(name)


def ratio_table(results: Results) -> Table | None:
    """Operations down, backends across: Lockyard/raw at p50, sequential and concurrent."""
    ratios = results.ratios(P50_MS)
    if not ratios:
        return None
    columns = list(dict.fromkeys((b, s) for (b, s, _, _) in ratios))
    headers = ["operation"]
    for backend, subject in columns:
        label = backend if subject == "lockyard" else f"{backend} {subject}"
        headers += [f"{label} seq", f"{label} conc"]
    rows = []
    for op in STORE_OP_NAMES:
        row = [op]
        for backend, subject in columns:
            row.append(spread(ratios.get((backend, subject, op, "sequential")), "x"))
            row.append(spread(ratios.get((backend, subject, op, "concurrent")), "x"))
        if any(cell != DASH for cell in row[1:]):
            rows.append(row)
    return headers, rows


def lock_table(results: Results, backend: str) -> Table:
    figures = results.aggregate()
    subjects = list(
        dict.fromkeys(
            (key[1], key[2])
            for key in figures
            if key[0] == backend and key[1] in ("lock", "floor", "peer")
        )
    )
    headers = [
        "library",
        "uncont. cycles/s",
        "uncont. p50 ms",
        "cont. cycles/s",
        "wait p50 ms",
        "wait p99 ms",
        "hand-over p50 ms",
        "hand-over p99 ms",
        "fairness max/min",
        "violations",
        "timeouts",
    ]
    rows = []
    for section, subject in subjects:
        u = figures.get((backend, section, subject, "lock_cycle", "uncontended"))
        c = figures.get((backend, section, subject, "lock_cycle", "contended"))
        rows.append(
            [
                subject,
                spread(_get(u, OPS_PER_S)),
                spread(_get(u, P50_MS)),
                spread(_get(c, OPS_PER_S)),
                spread(_get(c, "wait_p50_ms")),
                spread(_get(c, "wait_p99_ms")),
                spread(_get(c, "handover_p50_ms")),
                spread(_get(c, "handover_p99_ms")),
                spread(_get(c, "fairness")),
                spread(_get(c, "violations")),
                spread(_get(c, "timeouts")),
            ]
        )
    return headers, rows


def throughput_table(results: Results, backend: str) -> Table:
    """Operations and subjects down, task counts across: ops/s, and p99 latency."""
    columns = (("ops/s", OPS_PER_S), ("p99 ms", P99_MS))
    return _by_count_table(results, backend, "throughput", THROUGHPUT_OPS, "tasks", columns)


def blocking_store_table(results: Results, backend: str) -> Table:
    """Blocking ``get``/``set`` by subject, thread counts across: ops/s, p50 and p99."""
    columns = (("ops/s", OPS_PER_S), ("p50 ms", P50_MS), ("p99 ms", P99_MS))
    return _by_count_table(results, backend, "sync", SYNC_STORE_OPS, "threads", columns)


def _by_count_table(
    results: Results,
    backend: str,
    section: Section,
    ops: Sequence[str],
    unit: str,
    columns: Sequence[tuple[str, str]],
) -> Table:
    """Operations and subjects down; per count of ``unit`` (op ``name@count``), ``columns``."""
    figures = results.aggregate()
    keys = [key for key in figures if key[0] == backend and key[1] == section]
    counts = sorted({int(key[3].rsplit("@", 1)[1]) for key in keys})
    subjects = list(dict.fromkeys(key[2] for key in keys))
    headers = ["operation", "library"]
    for count in counts:
        first, *rest = columns
        headers += [f"{count} {unit} {first[0]}", *(f"{count} {label}" for label, _ in rest)]
    rows = []
    for op in ops:
        for subject in subjects:
            cells = []
            for count in counts:
                metrics = figures.get((backend, section, subject, op_name(op, count), "concurrent"))
                cells += [spread(_get(metrics, metric)) for _, metric in columns]
            if any(cell != DASH for cell in cells):
                rows.append([op, subject, *cells])
    return headers, rows


def scenario_table(results: Results, backend: str) -> Table:
    """Each scenario other than the default against it: lock-cycle rates, and its probe."""
    figures = results.aggregate()
    subjects = [
        key[2]
        for key in figures
        if key[0] == backend and key[1] == "lock" and key[2] != LOCKYARD and key[3] == "lock_cycle"
    ]
    headers = [
        "scenario",
        "uncont. cycles/s",
        "uncont. vs default",
        "cont. cycles/s vs default",
        "probe p50 ms",
        "probe p99 ms",
    ]
    rows = []
    for subject in dict.fromkeys(subjects):
        u = figures.get((backend, "lock", subject, "lock_cycle", "uncontended"))
        probe = figures.get((backend, "lock", subject, PROBE, "uncontended"))
        rows.append(
            [
                subject,
                spread(_get(u, OPS_PER_S)),
                spread(results.scenario_ratio(backend, subject, "uncontended", OPS_PER_S), "x"),
                spread(results.scenario_ratio(backend, subject, "contended", OPS_PER_S), "x"),
                spread(_get(probe, VISIBLE_P50_MS)),
                spread(_get(probe, VISIBLE_P99_MS)),
            ]
        )
    return headers, rows


#: The ``elections`` probe's metrics (lockyard_dev.bench.elections), in report order.
ELECTION_METRICS = ("resign", "killed_past_lease", "observe")
#: What client-go's leader election (15 s lease, 10 s renew deadline, 2 s retry) takes.
CLIENT_GO_REFERENCE = {
    "resign": "up to 2000 (2 s retry period)",
    "killed_past_lease": "up to 2000 past a 15 s lease",
    "observe": "n/a (watch the Lease)",
}


def elections_table(results: Results, backend: str) -> Table:
    """The ``elections`` scenario's probe: hand-over and observe latency, p50 and p99."""
    probe = next(
        (
            metrics
            for key, metrics in results.aggregate().items()
            if key[0] == backend and key[3] == PROBE and "resign_p50_ms" in metrics
        ),
        None,
    )
    headers = ["measurement", "p50 ms", "p99 ms", "client-go defaults"]
    if probe is None:
        return headers, []
    rows = [
        [
            label,
            spread(_get(probe, f"{label}_p50_ms")),
            spread(_get(probe, f"{label}_p99_ms")),
            CLIENT_GO_REFERENCE[label],
        ]
        for label in ELECTION_METRICS
    ]
    return headers, rows


#: The ``fenced`` probe's writes (lockyard_dev.bench.fenced), in report order.
FENCED_WRITES = ("set", "increment", "compare_and_swap")


def fenced_table(results: Results, backend: str) -> Table:
    """The ``fenced`` scenario's probe: fenced against unfenced writes, p50/p99 and the ratio."""
    probe = next(
        (
            metrics
            for key, metrics in results.aggregate().items()
            if key[0] == backend and key[3] == PROBE and "set_ratio_p50" in metrics
        ),
        None,
    )
    headers = ["write", "plain p50 ms", "fenced p50 ms", "p50 ratio", "plain p99", "fenced p99"]
    if probe is None:
        return headers, []
    rows = [
        [
            write,
            spread(_get(probe, f"{write}_plain_p50_ms")),
            spread(_get(probe, f"{write}_fenced_p50_ms")),
            spread(_get(probe, f"{write}_ratio_p50"), "x"),
            spread(_get(probe, f"{write}_plain_p99_ms")),
            spread(_get(probe, f"{write}_fenced_p99_ms")),
        ]
        for write in FENCED_WRITES
    ]
    return headers, rows


#: The ``permits`` probe's rows (lockyard_dev.bench.permits): label, metric prefix, unit.
PERMIT_ROWS = (
    ("semaphore cycle, 1 task", "sem_uncontended", "ms"),
    ("semaphore wait, 16 workers / 4 permits", "sem_contended_wait", "ms"),
    ("asyncio.Semaphore wait, same workload", "asyncio_contended_wait", "ms"),
    ("read cycle, 1 task", "rw_read", "ms"),
    ("write cycle, 1 task", "rw_write", "ms"),
    ("read wait, 16 workers (1/4 writes)", "rw_contended_read_wait", "ms"),
    ("write wait, 16 workers (1/4 writes)", "rw_contended_write_wait", "ms"),
)


def permits_table(results: Results, backend: str) -> Table:
    """The ``permits`` scenario's probe: cycles and waits, throughput and fairness."""
    probe = next(
        (
            metrics
            for key, metrics in results.aggregate().items()
            if key[0] == backend and key[3] == PROBE and "sem_uncontended_p50_ms" in metrics
        ),
        None,
    )
    headers = ["measurement", "p50 ms", "p99 ms", "cycles/s", "max/min share"]
    if probe is None:
        return headers, []
    rates = {
        "sem_contended_wait": "sem_contended",
        "asyncio_contended_wait": "asyncio_contended",
        "rw_contended_read_wait": "rw_contended",
    }
    rows = []
    for label, prefix, _ in PERMIT_ROWS:
        rate = rates.get(prefix)
        rows.append(
            [
                label,
                spread(_get(probe, f"{prefix}_p50_ms")),
                spread(_get(probe, f"{prefix}_p99_ms")),
                spread(_get(probe, f"{rate}_cycles_per_s")) if rate else DASH,
                spread(_get(probe, f"{rate}_share_ratio"), "x")
                if rate and rate != "rw_contended"
                else DASH,
            ]
        )
    return headers, rows


def goal_lines(checks: list[GoalCheck]) -> list[str]:
    return [
        f"{STATUS_MARK[check.status]:>6}  {check.backend}: {check.goal}: {check.detail}"
        for check in checks
    ]


# -- documents -------------------------------------------------------------------------------
def terminal_report(results: Results, checks: list[GoalCheck]) -> str:
    parts = []
    for backend in results.backends():
        version = results.servers.get(backend, "")
        parts.append(f"\n== {backend} {f'({version})' if version else ''}".rstrip())
        parts.append("\nstore operations (median of passes, (min–max))\n")
        parts.append(text_table(store_table(results, backend)))
        headers, rows = lock_table(results, backend)
        if rows:
            parts.append("\nlock cycles\n")
            parts.append(text_table((headers, rows)))
        headers, rows = scenario_table(results, backend)
        if rows:
            parts.append("\nscenarios against the default (ratios per pass)\n")
            parts.append(text_table((headers, rows)))
        headers, rows = elections_table(results, backend)
        if rows:
            parts.append("\nleader elections (the elections scenario's probe)\n")
            parts.append(text_table((headers, rows)))
        headers, rows = fenced_table(results, backend)
        if rows:
            parts.append("\nfenced writes (the fenced scenario's probe; goal p50 ratio <= 1.15)\n")
            parts.append(text_table((headers, rows)))
        headers, rows = permits_table(results, backend)
        if rows:
            parts.append("\nsemaphores and read-write locks (the permits scenario's probe)\n")
            parts.append(text_table((headers, rows)))
        headers, rows = throughput_table(results, backend)
        if rows:
            parts.append("\nconcurrent throughput\n")
            parts.append(text_table((headers, rows)))
    if checks:
        parts.append("\ngoals\n")
        parts.extend(goal_lines(checks))
    for note in results.notes:
        parts.append(f"note: {note.backend}: {note.subject}: {note.text}")
    return "\n".join(parts) + "\n"


def markdown_report(results: Results, checks: list[GoalCheck], chart: str | None) -> str:
    settings = results.settings
    env = results.environment
    out = [
        "# Lockyard benchmark",
        "",
        f"Generated by `{settings['command']}` on {env['date']}.",
        f"Machine: {env['cpus']} CPUs, {env['platform']}, Python {env['python']}, load average"
        f" at start {env['load']}, at the end {env.get('load_end', '?')}."
        f" Lockyard {env['lockyard']}; drivers: {env['drivers']}.",
        "",
        f"Every figure is the median of {settings['passes']} passes, with the lowest and highest"
        " pass in brackets. Latencies are per operation, in milliseconds; p50/p99 are"
        " nearest-rank percentiles.",
        "",
        "## Goals",
        "",
    ]
    if checks:
        out += [
            f"- **{STATUS_MARK[c.status]}** — {c.backend}: {c.goal}. {c.detail}." for c in checks
        ]
    else:
        out.append("No goal applies to the backends measured in this run.")
    ratio = ratio_table(results)
    if ratio is not None:
        out += [
            "",
            "## Lockyard / raw driver at p50",
            "",
            "Each operation against the plainest driver call making the same single round trip"
            " (see *How it was measured*): sequentially the two take turns call by call, so both"
            " see the same moments of the machine; the ratio is taken per pass.",
            "",
            markdown_table(ratio),
        ]
    if chart:
        out += ["", f"![ratios and lock-cycle throughput]({chart})"]
    for backend in results.backends():
        version = results.servers.get(backend, "")
        out += ["", f"## {backend}" + (f" ({version})" if version else ""), ""]
        if backend in BACKEND_CAVEATS:
            out += [BACKEND_CAVEATS[backend], ""]
        out += [
            f"### Store operations: sequential on one connection, and {settings['concurrency']}"
            " concurrent tasks",
            "",
            markdown_table(store_table(results, backend)),
        ]
        headers, rows = lock_table(results, backend)
        if rows:
            out += [
                "",
                f"### Lock cycles: uncontended, and {settings['lock_workers']} workers on one name",
                "",
                markdown_table((headers, rows)),
            ]
            peers = [
                p for p in PEERS if p.backend == backend and any(r[0] == p.label for r in rows)
            ]
            if peers:
                out += ["", "How each peer waits for a held lock:", ""]
                out += [
                    f"- {p.label}"
                    + (f" (`{p.requirement}`)" if p.requirement else "")
                    + f": {p.waits}."
                    for p in peers
                ]
        headers, rows = scenario_table(results, backend)
        if rows:
            out += [
                "",
                "### Scenarios against the default",
                "",
                "The same lock cycles on a connection set up by the scenario, as a ratio to the"
                " default connection's in the same pass. `mirroring-on` mirrors every held lock"
                " into a Kubernetes Lease; its probe is the time from an acquisition to the Lease"
                " being readable from the API server (polled every 5 ms).",
                "",
                markdown_table((headers, rows)),
            ]
        headers, rows = elections_table(results, backend)
        if rows:
            out += [
                "",
                "### Leader elections",
                "",
                "`resign`: from `resign()` returning to the next queued candidate leading;"
                " `killed_past_lease`: how long after a dead leader's lease ended the next"
                " candidate led; `observe`: from `resign()` to an observer on a second connection"
                " yielding the new leader (lockyard_dev.bench.elections).",
                "",
                markdown_table((headers, rows)),
            ]
        headers, rows = fenced_table(results, backend)
        if rows:
            out += [
                "",
                "### Fenced writes",
                "",
                "Each write with `fence=guard` (the lease checked in the same round trip) against"
                " the same write without, interleaved on one connection; goal: p50 ratio at most"
                " 1.15 on Redis and PostgreSQL (lockyard_dev.bench.fenced).",
                "",
                markdown_table((headers, rows)),
            ]
        headers, rows = permits_table(results, backend)
        if rows:
            out += [
                "",
                "### Semaphores and read-write locks",
                "",
                "Acquire + release cycles of one task, and 16 workers contending (each cycle held"
                " 1 ms) for a semaphore of 4 permits and for a read-write lock with a quarter of"
                " writes; `asyncio.Semaphore(4)` runs the same contended workload in-process as"
                " the reference (lockyard_dev.bench.permits).",
                "",
                markdown_table((headers, rows)),
            ]
        headers, rows = blocking_store_table(results, backend)
        if rows:
            out += [
                "",
                "### Blocking store operations (threads)",
                "",
                "`get` and `set` (a key out of 64) from that many threads sharing one"
                " `lockyard.sync` handle, and from threads sharing one redis-py blocking client"
                " (its own thread-safe pool), in alternating order from pass to pass"
                " (lockyard_dev.bench.sync_store). Reported, not judged.",
                "",
                markdown_table((headers, rows)),
            ]
        headers, rows = throughput_table(results, backend)
        if rows:
            out += [
                "",
                "### Concurrent throughput",
                "",
                "The same operation issued by that many tasks at once on one handle: Lockyard,"
                " the raw driver's own pool, and (Redis) the pipeline ceiling, a batch of as many"
                " commands as tasks written at once on one raw socket (its p99 is a whole"
                " batch's). `lock_cycle` is acquire + release, every task on a name of its own.",
                "",
                markdown_table((headers, rows)),
            ]
    out += ["", "## Notes", ""]
    if results.notes:
        out += [f"- {n.backend}: {n.subject}: {n.text}" for n in results.notes]
    else:
        out.append("Every backend, operation and peer selected ran.")
    out += ["", "## How it was measured", "", *_method(settings)]
    return "\n".join(out) + "\n"


def _method(settings: dict[str, object]) -> list[str]:
    return [
        f"- Store operations: {settings['iterations']} operations per measurement (or"
        f" {settings['max_seconds']} s, whichever ends first) after an untimed warm-up, once on"
        f" one task (sequential) and once shared by {settings['concurrency']} tasks on the same"
        " connection. Reads cycle over 64 keys; `check_and_set` and `index_timeout` create a new"
        " entry per call; `delete` and `remove_timeout_index` remove prepared entries;"
        " `compare_and_swap` always passes the current version (every call swaps). Scans and"
        f" `get_expired_timeouts` return {SCAN_MATCHES} entries, and so do their baselines on"
        " PostgreSQL (the same rows through the same indexes) and on Redis (a sorted-set index"
        " and a hash per record, read by one script, or ZRANGEBYSCORE of the due index); on"
        " Redis Cluster and DynamoDB it is the one-key call, so those ratios include a larger"
        " reply. Sequentially, Lockyard and its raw baseline take"
        " turns call by call (who goes first alternating), so a busy moment of the machine"
        " falls on both; concurrent runs go one after the other, the order alternating by"
        " pass.",
        "- Raw baselines, each driver set up as Lockyard sets up its own (same pool size,"
        " timeouts, no retries; asyncpg without the per-release reset round trip): redis-py"
        " SET for `set`, INCRBY for `increment`, SET NX PX on a new key for `check_and_set` (a"
        " write replicas receive, as they receive Lockyard's), EVALSHA of the plainest versioned"
        " compare-and-set script for `compare_and_swap`, GET for the operations Lockyard"
        " runs as one plain command (HGET, HMGET, ZADD, ZREM, ZRANGEBYSCORE), EVALSHA of an"
        " empty script for the others it runs as a Lua script; asyncpg prepared SELECT by"
        " primary key for point reads"
        " and a prepared SELECT of the same rows through the same index (key range, `kind`, due"
        " range) for scans and due reads, a"
        " conditional UPDATE ... RETURNING for `compare_and_swap` and INSERT ... ON CONFLICT"
        " upsert for other writes, on Lockyard's own table under a prefix of their own (same"
        " indexes, same amount of data around them); aioboto3 GetItem (consistent) for reads and"
        " PutItem for writes.",
        "- Lock cycles: uncontended is acquire + release on one task (or thread), timed as one"
        f" cycle. Contended is {settings['lock_workers']} workers looping acquire -> critical"
        f" section ({settings['hold_ms']} ms) -> release on one lock name for up to"
        f" {settings['lock_cycles']} cycles or {settings['max_seconds']} s. A shared flag checks"
        " mutual exclusion in every critical section. Wait is acquire start to holding;"
        " hand-over is the previous holder starting its release to the next holder holding,"
        " counted when that holder was already waiting; fairness is the largest worker's share"
        " of critical sections over the smallest. Blocking libraries run one thread per worker.",
        "- Lockyard's lock workers share one connection (tasks of one process); peers use the"
        " library's natural unit: one client shared by tasks or threads, one coordinator per"
        " tooz worker, one connection per advisory-lock worker (session locks need it).",
        "- Concurrent throughput: per task count, each operation runs"
        f" {settings['iterations']} times (or {settings['max_seconds']} s) after an untimed"
        " warm-up, Lockyard and the raw drivers back to back in alternating order. Raw: a stock"
        " redis-py `BlockingConnectionPool` client (GET, SET, SET NX PX + an owner-checked"
        " EVALSHA delete), asyncpg's pool (prepared primary-key SELECT and upsert on Lockyard's"
        " table, pg_try_advisory_lock + pg_advisory_unlock), and the Redis pipeline ceiling"
        " (pre-packed commands written as one batch on one socket, replies parsed by hiredis).",
        "- PostgreSQL durable floor: a prepared single-row upsert of a lease row, one connection,"
        " timed with synchronous_commit on and off; the floor of a cycle with one flushed and"
        " one unflushed commit is 1 / (1/on + 1/off) per second (`two_flush_per_s` in"
        " results.json: on / 2, a cycle whose release also waits for its flush). Beside it,"
        " Lockyard's own two statements of an uncontended cycle, prepared and called raw on one"
        " connection (`statements_per_s`): the floor against it is what the SQL costs, it"
        " against Lockyard's cycle what the library's layers cost. It is measured twice: on the"
        " benchmark's server (`fsync=off`: a flushed commit writes its WAL without the disk"
        " sync) and on a second server started for the run with `fsync=on`, where a flush"
        " reaches the disk; Lockyard's uncontended cycle runs on that server too, back to back"
        " with its floor (`lockyard, fsync=on`).",
        "- Each backend's server is started by `lockyard_dev.servers` on a loopback port"
        " and stopped after its run; backends run one after another, never at once.",
    ]


def write_report(results: Results, checks: list[GoalCheck], out: Path, chart: Path | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text(markdown_report(results, checks, chart.name if chart else None))
    results.to_json(out / "results.json")
    return path

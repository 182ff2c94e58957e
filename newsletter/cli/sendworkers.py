"""`slice send ISSUE --workers N`: N worker processes on this machine share one send.

The audience is frozen once, here; each worker is a `send_issue` in a process
of its own (several cores for the SMTP client, the ledger and DKIM), claiming rows from the same PostgreSQL ledger and taking its
slots of the one rate from the database. This process draws the progress from
the ledger and, on Ctrl-C or SIGTERM, stops the workers the same way.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from newsletter.cli.stopping import run_stoppable, term_as_interrupt
from newsletter.core.errors import NewsletterError, SendError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from newsletter.core.settings import Settings
    from newsletter.core.store import Store
    from newsletter.send.options import SendOptions

INTERRUPTED = 130
PROGRESS_SECONDS = 1.0  # how often the progress bar reads the ledger


def _worker(settings: Settings, issue: str, options: SendOptions) -> None:
    """One worker process: send until nothing is left (exit 130 when stopped by a signal)."""
    from newsletter.core.store import Store
    from newsletter.send.service import send_issue

    try:
        with Store.open(settings.database_url) as store:
            report = run_stoppable(
                send_issue(settings, store, issue, options=options, prepared=True)
            )
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    except NewsletterError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    if report.tally.stopped:
        print(f"Error: {report.tally.stopped}", file=sys.stderr)
        sys.exit(1)


def send_with_workers(
    console: Console,
    stderr: Console,
    settings: Settings,
    store: Store,
    issue: str,
    *,
    retry_failed: bool,
) -> None:
    from newsletter.issue.compose import prepare_editor_model
    from newsletter.send.service import (
        SendOptions,
        finish_workers,
        ledger_counts,
        prepare_workers,
    )

    n = settings.send.workers
    started = time.monotonic()
    prepared = prepare_workers(settings, store, issue, workers=n, retry_failed=retry_failed)
    if prepared.already_sent:
        console.print(f"Issue {issue} was already sent; nothing to do.")
        return
    before = ledger_counts(store, issue)
    options = SendOptions.from_settings(settings)
    # forked, not spawned: a worker starts with everything already imported (a fresh
    # interpreter takes seconds to import the sender, longer on a busy machine); no thread
    # runs yet here, and the database connections are closed so none is shared
    store.engine.dispose()
    fork = multiprocessing.get_context("fork")
    workers: list[BaseProcess] = [
        fork.Process(target=_worker, args=(settings, issue, options), name=f"slice-send-{i + 1}")
        for i in range(n)
    ]
    interrupted = False
    progress = Progress(
        TextColumn(f"sending ({n} workers)"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        console=stderr,
    )
    with term_as_interrupt():
        try:
            for worker in workers:
                worker.start()
            with progress:
                task = progress.add_task("send", total=sum(before.values()), counts="")
                while any(w.is_alive() for w in workers):
                    c = ledger_counts(store, issue)
                    progress.update(
                        task,
                        completed=c["sent"] + c["failed"] + c["skipped"],
                        counts=f"sent {c['sent']} · deferred {c['deferred']} · failed {c['failed']}",
                    )
                    # the count reads every row of the issue: once a second is enough for a
                    # progress bar (ten times a second cost PostgreSQL more than a worker's claims)
                    wait([w.sentinel for w in workers if w.is_alive()], PROGRESS_SECONDS)
        except KeyboardInterrupt:
            interrupted = True
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()  # SIGTERM: the worker writes what it knows and leaves
            for worker in workers:
                worker.join(60)
    report = finish_workers(store, issue)
    if report.finished:
        prepare_editor_model(settings, store)  # next week's compose finds it trained
    c = report.counts
    elapsed = time.monotonic() - started
    sent = c["sent"] - before["sent"]
    failed = [w for w in workers if w.exitcode not in (0, INTERRUPTED)]
    console.print(
        f"Issue {issue}: sent {sent} in {elapsed:.1f}s ({sent / elapsed if elapsed else 0:.1f}/s "
        f"over {n} workers{', DKIM-signed' if prepared.signed else ''})."
    )
    console.print(
        f"Ledger: {c['sent']} sent, {c['failed']} failed, {c['skipped']} skipped, "
        f"{c['deferred']} deferred, {c['pending'] + c['sending']} waiting of {sum(c.values())}."
        + (" Issue finished." if report.finished else "")
    )
    if interrupted or any(w.exitcode == INTERRUPTED for w in workers):
        stderr.print(f"Interrupted: nothing was lost. Run `slice send {issue}` again to continue.")
        raise SystemExit(INTERRUPTED)
    if failed:
        raise SendError(
            f"{len(failed)} of {n} workers stopped with an error (see above); nothing was lost: "
            f"run `slice send {issue}` again."
        )
    if not report.finished:
        console.print(f"Run `slice send {issue}` again to continue.")

# Operations: what the run says (console and Slack) as it starts, succeeds or fails,
# and the refusal of a report before any month is finished.
import time

from s2basemap import failures, notify


def report_requested(argv):
    """Whether this is `snakemake --report ...` (the Snakefile is read before the
    report is made, and Snakemake tells it nothing else)."""
    return any(arg == "--report" or arg.startswith("--report=") for arg in argv)


def check_report_possible():
    """`--report` shows finished months: before any, say so instead of Snakemake's
    complaint about a missing statistics.tsv."""
    if report_requested(sys.argv) and not any(map(published, PERIODS)):
        raise WorkflowError(
            f"No month is finished yet ({', '.join(PERIODS)}), so there is nothing to "
            "report: run `snakemake` first, then `snakemake --report report.html`."
        )


check_report_possible()
NOTIFIER = notify.Notifier(config["notify"]["webhook_env"])
STARTED = time.monotonic()


def on_start():
    failures.reset_outage(paths.outage())  # an outage stops one run, not the next
    NOTIFIER.send(notify.start_message(list(PERIODS), config["aoi"], str(Path.cwd())))


def notify_summary():
    elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - STARTED))
    NOTIFIER.send(
        notify.summary_message(
            [Path(run_file(paths.metadata(p))) for p in PERIODS], elapsed
        )
    )


def on_error(snakemake_log):
    """One line (and one message) per month left unpublished by unreadable scenes,
    with the command that fetches just those; a message per other failed job."""
    waiting = failures.waiting_months(paths, PERIODS)
    resume = failures.resume_command(sys.argv)
    for verdict in waiting:
        print(f"ERROR {verdict.line(resume)}", file=sys.stderr, flush=True)
        NOTIFIER.send(f":x: {verdict.line(resume)}\n{verdict.listing()}")
    covered = {verdict.period for verdict in waiting}
    notify.report_errors(
        NOTIFIER,
        snakemake_log,
        Path.cwd(),
        skip=lambda job: job["rule"] in ("fetch_scene", "scene_summary")
        and notify.job_period(job) in covered,
    )


onstart:
    on_start()


onsuccess:
    notify_summary()


onerror:
    on_error(log)

"""``callvault verify``: the archive's invariants, checked (and repaired) from the terminal."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from services.core.config import Settings
    from services.core.wiring import Storage
    from services.ingest.verify import Finding

from services.cli.options import DATA_DIR_OPTION, progress_bars, require_archive, settings_for


@click.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed safely (idempotent; safe beside a running server).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@DATA_DIR_OPTION
def verify(repair: bool, as_json: bool, data_dir: Path | None) -> None:
    """Check the whole archive: every row against its objects, every object against its row, parked
    audio, temp files, the analytics tables against the index, and (local) that only the owner can
    read the data dir's files.

    Works on the local data dir or, with CALLVAULT_BACKEND=aws, on the bucket and table. Exits 0 when
    everything agrees (or, with --repair, once every finding was repaired), 1 otherwise.

    \b
    Examples:
      callvault verify                 report only
      callvault verify --repair        repair, then report what is left
      callvault verify --json | jq .by_kind
    """
    from services.analytics.compaction import LateDays
    from services.core.wiring import build_storage
    from services.ingest.verify import ArchiveVerifier, Finding
    from services.ingest.wiring import build_archiver

    settings = settings_for(data_dir)
    if settings.backend != "aws":
        require_archive(settings, data_dir)
    storage = build_storage(settings)
    late_days = LateDays()
    archiver = build_archiver(settings, storage, on_late_write=late_days.add)
    reappeared = _erased_again(settings, storage, repair)  # first: a repair below must not rebuild them
    try:
        with progress_bars() as bar:
            report = ArchiveVerifier(archiver).run(repair=repair, progress=bar("checking calls"))
    finally:
        # Rows rewritten into closed days: folded in now, also when the run stops midway (Ctrl-C).
        late_days.merge(archiver.analytics)
    report.findings.extend(reappeared)
    if settings.backend != "aws":
        import time

        from services.local.hygiene import find_leftovers, sweep_data_dir

        leftovers = find_leftovers(settings.data_dir, time.time())
        if repair:
            sweep_data_dir(settings.data_dir, time.time())
        for path in leftovers.temp_files:
            report.findings.append(Finding("temp_file", None, f"left by a crash: {path.name}", True, repair))
        report.findings.extend(_loose_permissions(settings.data_dir, repair))
    summary = report.to_dict()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print(summary, repair)
    sys.exit(1 if report.unresolved else 0)


def _loose_permissions(data_dir: Path, repair: bool) -> list["Finding"]:
    """Files or folders group or others can read, every file checked (``serve``'s start trusts the files
    of owner-only folders): one finding for all, naming the first; ``repair`` makes them owner-only."""
    from services.ingest.verify import Finding
    from services.local.hygiene import find_loose_permissions, tighten_permissions

    loose = find_loose_permissions(data_dir)
    if not loose:
        return []
    left = loose
    if repair:
        tighten_permissions(data_dir, every_file=True)
        left = find_loose_permissions(data_dir)  # what chmod could not change (another owner's)
    example = left[0] if left else loose[0]
    shown = example.relative_to(data_dir).as_posix() if example != data_dir else "the data dir itself"
    detail = (
        f"{len(loose)} file(s) or folder(s) group or others can read, e.g. {shown}: "
        "callvault verify --repair makes them owner-only (0600/0700)"
    )
    if left and repair:
        detail += f"; {len(left)} could not be changed (owned by another user?): chown them to this one"
    return [Finding("loose_permissions", None, detail, True, repair and not left)]


def _erased_again(settings: "Settings", storage: "Storage", repair: bool) -> list["Finding"]:
    """Erased conversations (tombstones, #13) that are back, e.g. from a restored backup; ``repair``
    erases them again. Named by their keyed hash only, as the audit trail names them."""
    from services.ingest.verify import Finding
    from services.privacy.service import find_reappeared_objects
    from services.privacy.wiring import build_eraser

    eraser = build_eraser(settings, storage)
    if eraser.erased is None:
        return []
    # The trail's erase entries too: a restored calls table (AWS) has the tombstones of its day only.
    also = eraser.audit.erased_subjects() if eraser.audit is not None else set()
    objects = find_reappeared_objects(eraser.erased, storage.blobs, storage.index, also)
    found = sorted(objects)
    plan = eraser.plan_conversations(found, objects)  # a call without its row: erased where its objects are
    # A hold placed after the erasure (on the caller or the id) covers what a restore brought back:
    # repair leaves those and names the hold (erase would refuse the whole batch).
    holds = {call.conversation_id: eraser.holds.holding(call) for call in plan.calls} if eraser.holds else {}
    # On AWS the holds and the trail are the audit table: without it, "no hold" is not known, so nothing
    # is erased (a hold placed since would be ignored, the erasure unaudited).
    may_erase = eraser.holds is not None and eraser.audit is not None
    if repair and found and may_erase:
        plan.calls = [call for call in plan.calls if holds.get(call.conversation_id) is None]
        if plan.calls:
            eraser.erase(plan, actor="cli:verify-repair")
    detail = "erased before, present again (a restored backup?): callvault verify --repair erases it again"
    if not may_erase:
        detail += "; on AWS --repair needs CALLVAULT_AUDIT_TABLE (it keeps the legal holds)"
    findings = []
    for cid in found:
        hold = holds.get(cid)
        why = f"{detail}; under legal hold {hold.id}, so it is left until released" if hold else detail
        repaired = repair and may_erase and not hold
        findings.append(Finding("erased_reappeared", None, f"{eraser.erased.digest(cid)[:16]}: {why}", True, repaired))
    return findings


def _print(summary: dict[str, object], repair: bool) -> None:
    click.echo(
        f"Checked {summary['rows']} index rows, {summary['objects']} archive objects and "
        f"{summary['analytics_calls']} analytics calls."
    )
    items = summary["items"]
    assert isinstance(items, list)
    if not items:
        click.echo("Everything agrees.")
        return
    for item in items:
        state = "repaired" if item["repaired"] else ("repairable" if item["repairable"] else "needs attention")
        who = item["conversation_id"] or "-"
        click.echo(f"  {item['kind']:<30} {who:<40} {state}: {item['detail']}")
    click.echo(f"{summary['findings']} finding(s), {summary['repaired']} repaired, {summary['unresolved']} left.")
    if not repair and any(item["repairable"] for item in items):
        click.echo("Run `callvault verify --repair` to fix the repairable ones.")

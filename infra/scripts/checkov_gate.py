#!/usr/bin/env python3
"""Compare checkov's findings on the synthesized templates with the committed baseline.

    python3 scripts/checkov_gate.py BASELINE.json REPORT.json [REPORT.json ...]

Each report is checkov's JSON output (`-o json`) for CloudFormation templates named
`<Stack>.template.json`. A finding is `<Stack>:<Type>.<LogicalId>` for one check id. Every finding
must match an entry of the baseline (check id + a glob over that name); each entry carries the
reason the finding is accepted. A new finding fails (exit 1). Entries that matched nothing are
reported, not failed: some only apply to option variants that were not scanned.
"""
import fnmatch
import json
import os
import sys


def findings(report):
    """(check_id, name, check_name) for every failed check in one checkov JSON report."""
    runs = report if isinstance(report, list) else [report]
    for run in runs:
        if run.get("check_type") not in (None, "cloudformation"):
            continue
        for failed in run.get("results", {}).get("failed_checks", []):
            stack = os.path.basename(failed["file_path"]).removesuffix(".template.json")
            yield failed["check_id"], f"{stack}:{failed['resource']}", failed.get("check_name", "")


def gate(baseline, reports):
    """Returns (new findings, baseline entries that matched nothing)."""
    for entry in baseline:
        if not entry.get("reason", "").strip():
            raise ValueError(f"baseline entry for {entry.get('check')} has no reason")
    used = set()
    new = []
    for report in reports:
        for check_id, name, check_name in findings(report):
            matched = False
            for index, entry in enumerate(baseline):
                if entry["check"] == check_id and any(fnmatch.fnmatchcase(name, p) for p in entry["resources"]):
                    used.add(index)
                    matched = True
            if not matched:
                new.append((check_id, name, check_name))
    unused = [entry for index, entry in enumerate(baseline) if index not in used]
    return sorted(set(new)), unused


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        baseline = json.load(f)["accepted"]
    reports = []
    for path in argv[2:]:
        with open(path) as f:
            reports.append(json.load(f))
    new, unused = gate(baseline, reports)
    total = sum(1 for r in reports for _ in findings(r))
    print(f"checkov: {total} findings, {total - len(new)} accepted by the baseline, {len(new)} new")
    for entry in unused:
        print(f"  baseline entry matched nothing this run: {entry['check']} {entry['resources']}")
    for check_id, name, check_name in new:
        print(f"  NEW {check_id} {name}: {check_name}", file=sys.stderr)
    if new:
        print("Fix them, or add them to infra/checkov-baseline.json with the reason.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

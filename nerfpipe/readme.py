"""Copy the demo's results table from the report into README.md (between two markers), so
the README shows the last demo run's numbers rather than numbers typed by hand."""

from __future__ import annotations

import platform
import re
from datetime import date
from pathlib import Path

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.reporting.content import RESULTS_TITLE

START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"


def first_table(markdown: str) -> str:
    """The results table: the first markdown table (consecutive lines starting with '|') after the
    "## Results" heading, which a report has when its claims section comes first; else the first."""
    lines, table = markdown.splitlines(), []
    heading = f"## {RESULTS_TITLE}"
    if heading in lines:
        lines = lines[lines.index(heading) + 1:]
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise NerfpipeError("report has no markdown table")
    return "\n".join(table)


def update_readme(report_md: Path, readme: Path, cores: int | None = None) -> None:
    report_text = Path(report_md).read_text() if Path(report_md).is_file() else None
    if report_text is None:
        raise NerfpipeError(f"{report_md}: report not found (run the workflow first)")
    text = Path(readme).read_text()
    if START not in text or END not in text:
        raise NerfpipeError(f"{readme}: markers {START} / {END} not found")
    machine = f"{cores or '?'} CPU cores, {platform.machine()}"
    table = first_table(report_text)
    # Footnotes the table refers to (e.g. why LPIPS is n/a) come along.
    notes = [line for line in report_text.splitlines()
             if line.startswith("[^") and line.split("]")[0] + "]" in table]
    if notes:
        table += "\n\n" + "\n".join(notes)
    block = (f"{START}\nResults of the last `make demo` ({date.today().isoformat()}, {machine}; "
             f"full report: `results/report/report.md`):\n\n{table}\n{END}")
    text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    nio.write_text(readme, text)

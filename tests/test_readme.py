from __future__ import annotations

import pytest

from nerfpipe.errors import NerfpipeError
from nerfpipe.readme import END, START, first_table, update_readme


def test_first_table_stops_at_the_first_non_table_line() -> None:
    md = "# Report\n\ntext\n| a | b |\n|---|---|\n| 1 | 2 |\n\n| other | table |\n"
    assert first_table(md) == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_update_readme_replaces_only_the_marked_block(tmp_path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# r\n| psnr | lpips |\n|---|---|\n| 27.1 | n/a[^l] |\n\n[^l]: why\n[^other]: unused\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\nrest\n")
    update_readme(report, readme, cores=2)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{END}\nrest\n")
    assert "| 27.1 |" in text and "old table" not in text and "2 CPU cores" in text
    assert "[^l]: why" in text and "[^other]" not in text
    update_readme(report, readme, cores=2)  # idempotent: one block only
    assert readme.read_text().count(START) == 1


def test_missing_markers_or_report_are_errors(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    report = tmp_path / "report.md"
    report.write_text("| a |\n")
    with pytest.raises(NerfpipeError, match="markers"):
        update_readme(report, readme)
    with pytest.raises(NerfpipeError, match="report not found"):
        update_readme(tmp_path / "missing.md", readme)


def test_the_results_table_is_taken_when_a_claims_table_comes_first() -> None:
    md = ("# report\n\n## Claims\n\n| id | verdict |\n|---|---|\n| c | reproduced |\n\n"
          "## Results\n\nScenes: a\n\n| Scene | PSNR |\n|---|---:|\n| a | 30.00 |\n\ntext\n")
    assert first_table(md) == "| Scene | PSNR |\n|---|---:|\n| a | 30.00 |"

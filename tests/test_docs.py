"""The science the code cites lives in the repository: every docs/science.md §x cited exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sections() -> set[str]:
    text = (ROOT / "docs" / "science.md").read_text()
    return {m.group(1) for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", text, flags=re.M)}


def test_every_cited_section_exists_and_nothing_cites_a_file_outside():
    known = sections()
    assert {str(n) for n in range(1, 11)} <= known and {"3.1", "3.2", "4.1", "4.5"} <= known
    cited: dict[str, list[str]] = {}
    for path in [*ROOT.glob("src/inductionlab/**/*.py"), *ROOT.glob("tests/*.py")]:
        text = path.read_text()
        assert "SCIENCE" not in text.replace('"SCIENCE"', ""), f"{path}: cites a text outside the repository"
        for m in re.finditer(r"docs/science\.md §(\d+(?:\.\d+)?)", text):
            cited.setdefault(m.group(1), []).append(path.name)
    assert cited, "the code cites docs/science.md"
    missing = {sec: files for sec, files in cited.items() if sec not in known}
    assert not missing, missing


def test_every_experiment_has_a_report_title():
    from inductionlab.experiments import EXPERIMENTS, get_experiment

    titles = [get_experiment(name).title for name in EXPERIMENTS]
    assert all(titles) and len(set(titles)) == len(titles)

"""The README is a product page that stays true: its snippet runs, and every results row carries a command
that the named script accepts."""
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def results_rows():
    """The rows of the table under '## Results': [{column: cell}]."""
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_the_readme_is_short_and_speaks_of_the_project():
    assert len(README.splitlines()) <= 200
    # figures with their machine, date and commit; no run-by-run journal, nobody else's use of the machine
    assert not re.search(r"\bsessions?\b|shared with other|other users", README, re.I)


def test_the_python_snippets_run():
    blocks = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
    assert blocks
    for code in blocks:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_every_result_row_has_its_machine_date_and_a_command_the_script_accepts():
    rows = results_rows()
    assert len(rows) >= 3
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}, [0-9a-f]{7,}", row["date, commit"]), row
        assert re.search(r"\d+\.\d+ % \(\d+\.\d+-\d+\.\d+\)", row["test accuracy"]), row
        command = row["command"].strip("`")
        words = shlex.split(command)
        assert words[0] == "python" and words[1].startswith("examples/"), command
        script = words[1][len("examples/"):-len(".py")]
        module = load_script(script)
        if script in ("alexnet_catdog", "train_classifier"):
            import tinynet.train.images as images
            command_defaults = images.ALEXNET_CATDOG if script == "alexnet_catdog" else images.GENERIC
            args = images.parse_arguments(words[2:], images.build_parser(command_defaults))
            if not (args.eval_only or args.predict):     # those name checkpoints of earlier rows' runs
                images.check_arguments(args)
        else:
            try:
                module.parse_arguments(words[2:])
            except SystemExit as error:      # argparse rejects an unknown or malformed flag
                pytest.fail(f"{command}: {error}")

"""The service example of docs/ARCHITECTURE.md ("How a service plugs in") is complete, under 40 lines, and
works: run as written, DCMTK's findscu gets its matches from it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import dcmtk, dcmtk_env, free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def example() -> str:
    text = DOC.read_text()
    section = text.split("## How a service plugs in", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_example_is_under_40_lines():
    code = example()
    assert len(code.strip().splitlines()) < 40


def test_the_example_serves_findscu(tmp_path):
    port = free_port()
    scope: dict = {"PORT": port}
    exec(compile(example(), str(DOC), "exec"), scope)
    server = scope["server"]
    try:
        out = subprocess.run(
            [dcmtk("findscu"), "-P", "-aec", "FINDER", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1",
             "-k", "PatientName", "-v", "127.0.0.1", str(port)],
            env=dcmtk_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.shutdown()
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert "Doe^Jane" in log and "Roe^Rick" not in log
    assert log.count("(Pending)") == 1 and "Received Final Find Response (Success)" in log

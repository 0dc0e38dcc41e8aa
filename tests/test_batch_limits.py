"""Issue 15: a batch judges every input from its metadata, with the scenario's own bound.

The probe's batch held a link to /dev/zero and sparse 3 GB files: 6 GB of memory before
`too_large`. Inputs are now refused from their type and size before a byte is read, and the
batch's planning (which hashes every listed input to find copies and what already ended) holds
the scenario's limit too, instead of streaming each file up to 4 GiB first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mmflow.tasks.samples import numbered_invoices

# The batch flow in a child process against the session's server; it prints what it read and
# its own peak memory (VmHWM: ru_maxrss would carry over the high-water mark of the test
# session that forked it).
CHILD = """
import json, sys
from pathlib import Path
from mmflow.flows.batch import batch_flow
from mmflow.flows.runs import RunSettings
report = batch_flow(source=sys.argv[1], out=sys.argv[2], run=RunSettings(cache=False),
                    return_state=True).result(raise_on_failure=False)
status = Path('/proc/self/status').read_text()
io = dict(line.split(': ') for line in Path('/proc/self/io').read_text().splitlines())
print(json.dumps({'peak_mb': int(status.split('VmHWM:')[1].split()[0]) / 1024,
                  'read_mb': int(io['rchar']) / 2**20}))
"""
SPARSE_BYTES = 3 * 2**30
PEAK_MB = 1024  # the probe took 6,400 MB; the flow's own imports and server client ~400 MB
READ_MB = 256  # the 3 GB files were streamed whole while planning


def test_a_batch_refuses_sparse_giants_and_a_link_to_dev_zero_without_reading_them(
    prefect_server: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    [(name, data)] = numbered_invoices(1)
    (inbox / name).write_bytes(data)
    for giant in ("sparse-a.pdf", "sparse-b.pdf"):
        with (inbox / giant).open("wb") as handle:
            handle.truncate(SPARSE_BYTES)
    (inbox / "zero.pdf").symlink_to("/dev/zero")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(inbox), str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PREFECT_API_URL=prefect_server),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    ended = {Path(line["uri"]).name: (line["error"] or {}).get("code", "ok") for line in lines}
    assert ended == {
        name: "ok",
        "sparse-a.pdf": "too_large",
        "sparse-b.pdf": "too_large",
        "zero.pdf": "link_outside_folder",
    }
    assert measured["read_mb"] < READ_MB, measured
    assert measured["peak_mb"] < PEAK_MB, measured

"""The hostile corpus measured: each case's outcome, peak memory growth and seconds.

Each case (tests/badinputs.py) runs in a fresh child process through the steps the invoice or
meeting flow runs first (tests/bad_input_child.py); the bounds it is held to are in
docs/bad-inputs.md and enforced by tests/test_bad_inputs.py.

    .venv/bin/python benchmarks/bad_inputs.py [NAME ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmflow.tasks.inputs import carried_name
from tests.bad_input_child import run_in_child
from tests.badinputs import hostile_cases


def main(names: list[str]) -> int:
    cases = [c for c in hostile_cases() if not names or c.name in names]
    mismatches = 0
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "in"
        folder.mkdir()
        print(f"| {'case':<28} | flow    | {'expected':<19} | {'ended as':<19} | peak MB | s     |")
        print(f"| {'-' * 28} | ------- | {'-' * 19} | {'-' * 19} | ------- | ----- |")
        for case in cases:
            report = run_in_child(case.pipeline, carried_name(str(case.make(folder))), 600)
            growth = float(report["peak_mb"]) - float(report["base_mb"])
            flow = "invoice" if case.pipeline == "document" else "meeting"
            name = case.name.encode("unicode_escape").decode()
            mismatches += report["outcome"] != case.expected
            print(
                f"| {name:<28} | {flow:<7} | {case.expected:<19} | {report['outcome']!s:<19} "
                f"| {growth:7.0f} | {float(report['seconds']):5.2f} |",
                flush=True,
            )
    print(f"\n{len(cases)} cases, {mismatches} ended otherwise than expected")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

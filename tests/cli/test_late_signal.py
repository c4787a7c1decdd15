"""A signal after the command has returned (while the interpreter shuts down) does not turn a
finished command into a failed one: the process ends at once with the command's exit code."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT

#: the command, then a shutdown that takes a while (as MLflow's teardown can)
SCRIPT = """
import atexit, sys, time
atexit.register(time.sleep, 5)
sys.argv = ["paretrain", "spec-schema"]
from paretrain.cli import main
main()
"""


def test_a_sigterm_during_shutdown_keeps_the_commands_exit_code():
    p = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    lines = []
    for line in p.stdout:  # up to the schema's closing brace: the command has returned
        lines.append(line)
        if line.rstrip() == "}":
            break
    out = "".join(lines)
    t0 = time.monotonic()
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert '"$schema"' in out or '"properties"' in out
    assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    assert time.monotonic() - t0 < 4  # ended at the signal, not after the 5 s shutdown

"""No credential is ever printed: `iotchain dev --mqtt` with a password in the broker URL
shows the URL in its banner and in the bridge's log line with the password as `***`."""

import os
import subprocess

from conftest import BIN, free_port


def test_the_broker_password_is_not_printed(tmp_path):
    broker = free_port()  # nothing listens there: the bridge keeps retrying in the background
    url = f"mqtt://node:hunter2@127.0.0.1:{broker}"
    proc = subprocess.Popen(
        [BIN, "dev", "--no-sim", "--data-dir", str(tmp_path / "dev"),
         "--http-addr", f"127.0.0.1:{free_port()}", "--mqtt", url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
    )
    lines = []
    try:
        # The banner ends with the "stop:" line; the bridge logs its start before it.
        for line in proc.stdout:
            lines.append(line)
            if "stop:" in line:
                break
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    out = "".join(lines)
    assert "hunter2" not in out, out
    shown = f"mqtt://node:***@127.0.0.1:{broker}"
    assert f"MQTT:        {shown}" in out, out
    # The bridge's log line names the broker the same way.
    started = [line for line in out.splitlines() if "mqtt bridge started" in line]
    assert started and shown in started[0], out

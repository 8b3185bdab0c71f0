"""No credential is ever printed: `iotchain dev --mqtt` with a password in the broker URL
shows the URL in its banner and in the bridge's log line with the password as `***`."""

import os
import subprocess

from conftest import BIN, free_port


def output_until(cmd, marker, log_level, cwd=None) -> str:
    """Everything `cmd` prints until a line contains `marker` (then it is stopped)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RUST_LOG": log_level, "NO_COLOR": "1"})
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                break
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    return "".join(lines)


def test_the_broker_password_is_not_printed(tmp_path):
    broker = free_port()  # nothing listens there: the bridge keeps retrying in the background
    url = f"mqtt://node:hunter2@127.0.0.1:{broker}"
    # The banner ends with the "stop:" line; the bridge logs its start before it.
    out = output_until([BIN, "dev", "--no-sim", "--data-dir", str(tmp_path / "dev"),
                        "--http-addr", f"127.0.0.1:{free_port()}", "--mqtt", url], "stop:", "info")
    assert "hunter2" not in out, out
    shown = f"mqtt://node:***@127.0.0.1:{broker}"
    assert f"MQTT:        {shown}" in out, out
    # The bridge's log line names the broker the same way.
    started = [line for line in out.splitlines() if "mqtt bridge started" in line]
    assert started and shown in started[0], out


def test_a_peer_password_is_not_logged(tmp_path):
    """A follower whose peer URL carries a password (HTTP basic auth in front of a peer) and
    cannot reach it logs the failures, at debug level too, with the password as `***`."""
    from conftest import cli
    base = free_port()
    cli("testnet", "--validators", "1", "--followers", "1", "--dir", str(tmp_path / "net"),
        "--base-port", str(base))
    config = tmp_path / "net" / "follower-0" / "node.toml"
    dead = free_port()
    text = config.read_text()
    start = text.index("peers = [")
    end = text.index("]", start) + 1
    config.write_text(text[:start] + f'peers = ["http://ops:hunter2@127.0.0.1:{dead}"]' + text[end:])
    # The follower long-polls its peer for blocks: wait for the failure it logs.
    out = output_until([BIN, "node", "--config", str(config)], "peer unavailable for sync",
                       "debug,hyper=info,h2=info,reqwest=info", cwd=config.parent)
    assert "hunter2" not in out, out
    assert f"http://ops:***@127.0.0.1:{dead}" in out, out

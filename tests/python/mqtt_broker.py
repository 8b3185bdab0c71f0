"""A real Mosquitto broker for the tests, and an independent MQTT client (paho-mqtt).

The broker runs as `mosquitto -c <conf>` on a free 127.0.0.1 port with its own persistence
directory; its log goes to stderr (unbuffered), which is read line by line so that tests can wait for
events ("client X connected", "subscribed") instead of sleeping.
"""

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, directory: Path, port: int | None = None, tls: dict | None = None):
        """`tls`: {"cafile", "certfile", "keyfile"} paths: the listener speaks TLS and requires
        a client certificate signed by the CA (mutual TLS, as production brokers do)."""
        self.dir = directory
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()

    def start(self):
        persist = self.dir / "persistence"
        persist.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {persist}/\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n"
            "connection_messages true\n"
            + (f"cafile {self.tls['cafile']}\ncertfile {self.tls['certfile']}\n"
               f"keyfile {self.tls['keyfile']}\nrequire_certificate true\n" if self.tls else "")
            +
            # Running as root, Mosquitto would switch to the `mosquitto` user, who cannot write
            # the test's persistence directory.
            "user root\n"
        )
        start_index = len(self.lines)
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        try:
            self.wait_line("version", "running", after=start_index, timeout=20)
        except AssertionError:
            self.proc.kill()
            raise
        return self

    def _read(self, proc):
        for line in proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<mosquitto exited>")
            self.cond.notify_all()

    def mark(self) -> int:
        """The index of the next log line (to wait for events after now)."""
        with self.cond:
            return len(self.lines)

    def wait_line(self, *parts, after=0, timeout=30) -> str:
        """Waits until a log line after index `after` contains every part."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[after:]:
                    if all(p in line for p in parts):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"mosquitto never logged {parts!r}; log:\n" + "\n".join(self.lines[-40:]))
                self.cond.wait(left)

    def stop(self):
        """SIGTERM: Mosquitto writes its persistence file (sessions, queued messages) and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class AckClient:
    """A paho-mqtt client that publishes readings and collects every ack (JSON) it receives."""

    def __init__(self, broker: Broker, client_id: str, tls: dict | None = None):
        """`tls`: {"cafile", "certfile", "keyfile"}: connect with TLS and this client certificate."""
        self.broker = broker
        self.acks = []  # (topic, parsed JSON)
        self.cond = threading.Condition()
        self.connections = 0
        self.subscribed = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        if tls:
            c.tls_set(ca_certs=str(tls["cafile"]), certfile=str(tls["certfile"]), keyfile=str(tls["keyfile"]))
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def start(self):
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.subscribed >= 1, "subscription to acks")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe("iotchain/+/acks", qos=1)
            with self.cond:
                self.connections += 1
                self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subscribed += 1
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.acks.append((msg.topic, json.loads(msg.payload)))
            self.cond.notify_all()

    def wait(self, predicate, what, timeout=30):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what}; acks so far: {self.acks[-10:]}")

    def publish(self, topic: str, payload: bytes):
        """Publishes with QoS 1 and waits for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            # The connection dropped (a broker restart): paho keeps a QoS 1 message and sends
            # it on reconnection, but its wait_for_publish raises at once for this rc; wait
            # for the PUBACK the way it would.
            deadline = time.monotonic() + 30
            with info._condition:
                while not info._published and time.monotonic() < deadline:
                    info._condition.wait(0.5)
            assert info._published, f"broker did not acknowledge a publish on {topic}"
            return
        info.wait_for_publish(timeout=30)
        assert info.is_published(), f"broker did not acknowledge a publish on {topic}"

    def results(self, status=None):
        """Every per-reading result received so far (optionally of one status)."""
        with self.cond:
            out = [r for _, a in self.acks for r in a.get("results", [])]
        return [r for r in out if status is None or r["status"] == status]

    def result_for(self, reading_id: str, status: str, timeout=30) -> dict:
        """Waits for a result of `status` for a reading id."""
        found = []

        def seen():
            for _, a in self.acks:
                for r in a.get("results", []):
                    if r.get("id") == reading_id and r["status"] == status:
                        found.append((a, r))
                        return True
            return False

        self.wait(seen, f"{status} ack of {reading_id}", timeout)
        return found[0][1]

    def message_ack(self, predicate, timeout=30) -> dict:
        """Waits for a per-message ack (not a final one) matching a predicate."""
        found = []

        def seen():
            for _, a in self.acks:
                if a.get("status") != "final" and predicate(a):
                    found.append(a)
                    return True
            return False

        self.wait(seen, "a message ack", timeout)
        return found[0]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()

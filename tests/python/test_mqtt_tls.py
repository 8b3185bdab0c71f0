"""The MQTT bridge over TLS to a Mosquitto broker with a private CA that requires client
certificates (mutual TLS, as AWS IoT Core and most production brokers do): `iotchain dev
--mqtt mqtts://… --mqtt-ca-file --mqtt-client-cert --mqtt-client-key`. The CA, the broker's
certificate and the clients' are made here with `cryptography`."""

import datetime
import ipaddress
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, Node
from cose_device import reading_id
from helpers import new_device
from mqtt_broker import AckClient, Broker


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_pki(d):
    """A CA, a certificate for the broker at 127.0.0.1 and client certificates for the node and
    the device side, each with its key; returns their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("iotchain test CA")).issuer_name(_name("iotchain test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths = {"cafile": d / "ca.pem"}

    def leaf(name, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(d / f"{name}.key", key)
        return {"cafile": d / "ca.pem", "certfile": d / f"{name}.pem", "keyfile": d / f"{name}.key"}

    paths["broker"] = leaf("broker", ExtendedKeyUsageOID.SERVER_AUTH,
                           [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    paths["node"] = leaf("node", ExtendedKeyUsageOID.CLIENT_AUTH)
    paths["device"] = leaf("device", ExtendedKeyUsageOID.CLIENT_AUTH)
    return paths


def test_the_bridge_speaks_mutual_tls_to_a_broker_with_a_private_ca(tmp_path):
    pki = make_pki(tmp_path)
    b = Broker(tmp_path / "mosquitto", tls=pki["broker"]).start()
    mark = b.mark()
    n = Node(tmp_path / "devnet", extra_args=[
        "--mqtt", b.url, "--mqtt-client-id", "iotchain-tls-node",
        "--mqtt-ca-file", str(pki["cafile"]),
        "--mqtt-client-cert", str(pki["node"]["certfile"]), "--mqtt-client-key", str(pki["node"]["keyfile"]),
    ]).start()
    c = None
    try:
        b.wait_line("iotchain-tls-node", "iotchain/+/readings", after=mark)
        c = AckClient(b, "device-side-tls", tls=pki["device"]).start()
        d = new_device(n)
        m = d.sign()
        c.publish(f"iotchain/{d.address}/readings", m)
        c.result_for(reading_id(m), "final")
    finally:
        if c:
            c.close()
        n.stop()
        b.stop()


def test_a_client_certificate_needs_its_key(tmp_path):
    # clap refuses half a client certificate before anything starts.
    p = subprocess.run([BIN, "dev", "--data-dir", str(tmp_path / "d"), "--mqtt", "mqtts://127.0.0.1:1",
                        "--mqtt-client-cert", str(tmp_path / "x.pem")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--mqtt-client-key" in p.stderr, p.stderr

"""Server parts in isolation: tokens, TLS, upload limits."""

from __future__ import annotations

import time
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from artdet.v1 import artdet_pb2 as pb
from artdet.server.app import ArtdetServer, ServerConfig
from artdet.server.auth import parse_tokens
from artdet.server.ingest import _ImageWriter
from artdet.detector.errors import InvalidArgument, ResourceExhausted


def test_token_formats_and_bad_roles():
    assert parse_tokens("a=operator,annotator; b=client") == {"a": {"operator", "annotator"}, "b": {"client"}}
    assert parse_tokens('{"t": ["admin"], "u": "client"}') == {"t": {"admin"}, "u": {"client"}}
    with pytest.raises(ValueError, match="roles"):
        parse_tokens("a=root")
    with pytest.raises(ValueError, match="roles"):
        parse_tokens("a=")


def test_upload_writer_enforces_size_and_checksums(tmp_path):
    import hashlib

    writer = _ImageWriter(tmp_path, max_bytes=10)
    writer.write(pb.ImageChunk(file_name="a.jpg", data=b"12345", sha256=hashlib.sha256(b"12345").hexdigest()))
    with pytest.raises(ResourceExhausted, match="limit of 10 bytes"):
        writer.write(pb.ImageChunk(file_name="b.jpg", data=b"123456"))
    writer.close()
    writer = _ImageWriter(tmp_path / "2", max_bytes=100)
    with pytest.raises(InvalidArgument, match="sha256"):
        writer.write(pb.ImageChunk(file_name="c.jpg", data=b"abc", sha256="0" * 64))
    writer = _ImageWriter(tmp_path / "3", max_bytes=100)
    writer.write(pb.ImageChunk(file_name="d.jpg", data=b"abc"))
    with pytest.raises(InvalidArgument, match="ended without its sha256"):
        writer.write(pb.ImageChunk(file_name="e.jpg", data=b"abc"))
    writer.close()


def test_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    (tmp_path / "models").mkdir()
    server = ArtdetServer.replica(ServerConfig(model_dir=str(tmp_path / "models"), host="localhost", port=0,
                                               tls_cert=str(cert), tls_key=str(key)))
    server.start()
    try:
        secure = grpc.secure_channel(f"localhost:{server.port}", grpc.ssl_channel_credentials(cert.read_bytes()))
        reply = health_pb2_grpc.HealthStub(secure).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        plain = grpc.insecure_channel(f"localhost:{server.port}")
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
    finally:
        server.stop(0)


def test_a_watcher_gets_the_last_events_the_runner_writes_after_the_state(tmp_path):
    """The runner marks a job succeeded, then appends "registered" and "finished": a watcher that sees the
    ended state first still delivers those events (a race issue 15's slower registration exposed)."""
    import threading

    from artdet.detector.events import append_event
    from artdet.server.training_service import follow_events

    append_event(tmp_path, "exported", parity=None)
    late = threading.Timer(0.5, lambda: (append_event(tmp_path, "registered", model_name="m", model_version=1),
                                         append_event(tmp_path, "finished", state="succeeded")))
    late.start()
    try:
        kinds = [e["type"] for e in follow_events(tmp_path / "events.jsonl", lambda: True, lambda: True,
                                                  poll=0.05)]
    finally:
        late.cancel()
    assert kinds == ["exported", "registered", "finished"]
    # a job whose row ended without a "finished" event (a full disk) is not watched forever
    started = time.monotonic()
    assert [e["type"] for e in follow_events(tmp_path / "none.jsonl", lambda: True, lambda: True, poll=0.05,
                                             grace=0.3)] == []
    assert time.monotonic() - started < 2

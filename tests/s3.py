"""A real S3 server on loopback for team-lake tests: moto's, behind a proxy a test can cut.

`moto_server` speaks the S3 HTTP API to both DuckDB's httpfs and pyarrow.fs. It keeps its
objects in memory, so a test that needs "the object store went away" stops the `TcpProxy` in
front of it (connections refused, as for a server that is down) and starts it again on the
same port: the objects are still there, as on a real server that came back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from pyarrow import fs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} after {timeout} s")


class MotoServer:
    """`moto_server` on a free loopback port, for the life of the context."""

    def __init__(self, *, auth_after: int | None = None) -> None:
        """`auth_after`: enforce IAM credentials after that many requests (moto's
        INITIAL_NO_AUTH_ACTION_COUNT), so that wrong keys are refused."""
        self.port = free_port()
        self.auth_after = auth_after
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        env = dict(os.environ)
        if self.auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.auth_after)
        self._process = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(self.port)
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


class TcpProxy:
    """Forwards a loopback port to another; `stop()` cuts every connection and refuses new
    ones until `start()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def client(
    endpoint: str, *, key_id: str = "test", secret: str = "test", create_buckets: bool = False
) -> fs.S3FileSystem:
    """pyarrow's S3 client for the loopback server at `endpoint`."""
    return fs.S3FileSystem(
        access_key=key_id,
        secret_key=secret,
        region="us-east-1",
        endpoint_override=endpoint.removeprefix("http://"),
        scheme="http",
        allow_bucket_creation=create_buckets,
    )


def make_bucket(endpoint: str, *, key_id: str = "test", secret: str = "test") -> str:
    """A new empty bucket on the server at `endpoint`; returns its name."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client(endpoint, key_id=key_id, secret=secret, create_buckets=True).create_dir(name)
    return name


def list_keys(endpoint: str, prefix: str) -> list[str]:
    """Every object under `bucket/prefix` (as `bucket/key`), sorted."""
    selector = fs.FileSelector(prefix, recursive=True, allow_not_found=True)
    infos = client(endpoint).get_file_info(selector)
    return sorted(i.path for i in infos if i.type == fs.FileType.File)


def read_object(endpoint: str, key: str) -> bytes:
    """The bytes of `bucket/key`."""
    with client(endpoint).open_input_stream(key) as stream:
        data: bytes = stream.read()
    return data

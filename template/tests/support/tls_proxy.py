"""TLS in front of the embedded PostgreSQL, whose build has no TLS of its own.

PostgreSQL negotiates TLS inside its protocol: the client sends an SSLRequest and,
on the answer "S", starts the TLS handshake on the same socket. This proxy plays
that part with a real certificate, then relays bytes to the server unchanged, so
asyncpg's certificate checks run exactly as against a TLS-enabled server.
"""

import contextlib
import socket
import ssl
import struct
import threading
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class TlsProxy:
    def __init__(self, backend_port: int, certificate: Path, private_key: Path) -> None:
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, private_key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        # One entry per client connection: did it ask for TLS?
        self.connections_encrypted: list[bool] = []
        # TLS handshakes completed: the client accepted the certificate.
        self.handshakes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_forever, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def reset(self) -> None:
        """Forget the connections seen so far."""
        with self._lock:
            self.connections_encrypted.clear()
            self.handshakes = 0

    def _accept_forever(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            header = _read_exactly(client, 8)
            while struct.unpack("!ii", header)[1] == GSSENC_REQUEST:
                client.sendall(b"N")  # no GSSAPI encryption; the client asks again
                header = _read_exactly(client, 8)
            encrypted = struct.unpack("!ii", header)[1] == SSL_REQUEST
            self.connections_encrypted.append(encrypted)
            if encrypted:
                client.sendall(b"S")
                client = self.context.wrap_socket(client, server_side=True)
                with self._lock:
                    self.handshakes += 1
                header = b""
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except (OSError, ssl.SSLError):  # the client gave up, e.g. refused our CA
            client.close()
            return
        backend.sendall(header)
        threading.Thread(target=_relay, args=(backend, client), daemon=True).start()
        _relay(client, backend)


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed during negotiation")
        data += chunk
    return data


def _relay(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        # shutdown() wakes the other relay thread, blocked reading; close() would not.
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

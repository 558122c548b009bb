"""A restarted local Kafka takes its old ports when a server could listen on them."""

from __future__ import annotations

import socket

from driftline.streams.embedded.stack import _port_if_free


def _port_in_time_wait() -> int:
    """A port whose server closed its side of a connection first, as a stopping broker
    does: that socket lingers in TIME_WAIT on the server's port. The listener sets
    SO_REUSEADDR, as Java's ServerSocket (so Kafka's) does, and its sockets inherit it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server closes first: TIME_WAIT is on its side
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_is_free_for_a_server() -> None:
    port = _port_in_time_wait()
    with socket.socket() as plain:  # without SO_REUSEADDR the port looks taken
        try:
            plain.bind(("127.0.0.1", port))
            plain_bind_refused = False
        except OSError:
            plain_bind_refused = True
    assert plain_bind_refused, "the test did not leave the port in TIME_WAIT"
    assert _port_if_free(port)


def test_a_port_someone_listens_on_is_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not _port_if_free(listener.getsockname()[1])

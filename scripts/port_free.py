"""Exit 2 with one line on stderr when HOST:PORT cannot be listened on (`make ui`).

    python scripts/port_free.py HOST PORT [MAKE_VARIABLE]

`mlflow ui` on a taken port logs the bind error among its INFO lines and still exits 0;
this check runs first. The probe sets SO_REUSEADDR as the servers do, so a port that only
has connections in TIME_WAIT counts as free.
"""

from __future__ import annotations

import socket
import sys


def port_problem(host: str, port_text: str, variable: str = "PORT") -> str | None:
    """None when a server could listen on host:port, else the one-line reason."""
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        return f"{variable}={port_text}: not a port number: allowed: 1..65535"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"host {host}: cannot resolve it ({err.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(1)
        except OSError as err:
            return (f"{host}:{port} is not free ({err.strerror}): stop the server using it or "
                    f"pick another port, e.g. {variable}={port + 1 if port < 65535 else 1024}")
    return None


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: port_free.py HOST PORT [MAKE_VARIABLE]", file=sys.stderr)
        return 2
    problem = port_problem(*argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The terminal of a process started by the runtime: its pty master goes to the caller's
--console-socket (runc's protocol: one SCM_RIGHTS message on a unix stream socket). A
foreground run/exec without one keeps it, and the command line relays it to its stdio."""
import os
import socket


def send_master(path, master, name="/dev/ptmx"):
    """Connect to the unix socket at `path` and send `master` over it; closes master.
    The payload names the terminal, as runc's does (receivers read only the descriptor)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            socket.send_fds(sock, [name.encode()], [master])
    finally:
        os.close(master)


"""The terminal of a process started by the command line: its pty master goes to the
caller's --console-socket (runc's protocol: one SCM_RIGHTS message on a unix stream
socket), or, for a foreground run/exec without one, is relayed to our own stdio."""
import os
import select
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


def relay(master, stdin=0, stdout=1):
    """Copy stdin to the terminal and the terminal to stdout until the process side hangs
    up (EIO on the master). A tty stdin is put in raw mode meanwhile, so keys such as ^C
    reach the container's terminal instead of us. Closes master."""
    import termios
    import tty
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    watched = [master, stdin]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:         # EIO: every holder of the peer has gone
                    return
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    watched.remove(stdin)   # our stdin ended; the process keeps its terminal
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)

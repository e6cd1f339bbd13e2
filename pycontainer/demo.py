"""`python -m pycontainer.demo`: one container on the built-in image (the host's root,
read-only), printing who it is. Needs root."""
import sys
import uuid

import pycontainer as pc


def main():
    factory = pc.Factory()
    name = f"demo-{uuid.uuid4().hex[:8]}"
    c = factory.create(name, pc.Config(hostname=name))
    try:
        pid, exits = c.start(pc.ProcessConfig(
            args=["/bin/sh", "-c", "echo hello from $(hostname) as pid $$"],
            stdout=sys.stdout.fileno(), stderr=sys.stderr.fileno()))
        return exits.get(timeout=30)
    finally:
        c.destroy()


if __name__ == "__main__":
    sys.exit(main())

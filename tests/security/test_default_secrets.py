"""The default Config (the host's root, read-only) does not hand the host's secrets to root
in the container (issue 18, item 10).

With Docker's capability set, root in a host-image container read every file on the host:
CAP_DAC_OVERRIDE skips the permission check, CAP_SETUID / CAP_SETGID become any file's
owner or group, and where a host directory is bound writable CAP_CHOWN / CAP_FOWNER take a
file over or open its mode. The host-image default leaves those out. Root-owned secrets
are another matter: root in the container is uid 0, their owner, whatever its
capabilities, so the well-known ones (/etc/shadow and friends, ssh host keys) are masked.
"""
import os
import shutil
import tempfile

import pytest

import pycontainer as pc
from pycontainer.security import DEFAULT_CAPS, HOST_IMAGE_CAPS, Capabilities

from helpers import pooled_create, run, sh  # noqa: E402  (tests/helpers.py)

OTHER = 4242          # another user of the host
PY = "/usr/bin/python3"


@pytest.fixture
def private_dir():
    """A host directory visible in the host image (not under /tmp or /run, which it
    replaces), with another user's 0600 file in it."""
    d = tempfile.mkdtemp(prefix="pycontainer-secrets-", dir="/var/tmp")
    os.chmod(d, 0o755)
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    os.chmod(secret, 0o600)
    os.chown(secret, OTHER, OTHER)
    yield d
    shutil.rmtree(d)


def test_the_default_is_the_host_image_minus_what_reads_others_files():
    assert set(pc.Config().capabilities.effective) == set(HOST_IMAGE_CAPS)
    for cap in ("CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_SETUID", "CAP_SETGID",
                "CAP_CHOWN", "CAP_FOWNER"):
        assert cap not in pc.Config().capabilities.bounding
    # An image of its own keeps Docker's set; capabilities asked for are kept as given.
    assert set(pc.Config(rootfs="/").capabilities.effective) == set(DEFAULT_CAPS)
    assert pc.Config(capabilities=Capabilities()).capabilities == Capabilities()
    import dataclasses
    assert dataclasses.replace(pc.Config(rootfs="/"), rootfs=None) == pc.Config()
    assert dataclasses.replace(pc.Config(), rootfs="/") == pc.Config(rootfs="/")


@pytest.fixture(params=["unpooled", "pooled"])
def container(factory, request):
    """Containers made by the Factory, or taken from a Pool (a prepared sandbox)."""
    made = []

    def make(cid, config):
        made.append(factory.create(cid, config) if request.param == "unpooled"
                    else pooled_create(factory, cid, config))
        return made[-1]
    yield make
    for c in made:
        c.destroy()


def test_etc_shadow_is_not_readable(container):
    c = container("shadow", pc.Config())
    status, out, err = sh(c, "cat /etc/shadow /etc/gshadow")
    assert "root:" not in out, "container root read /etc/shadow"
    assert status != 0 or out == "", (status, out, err)


def test_another_users_0600_file_is_not_readable(container, private_dir):
    c = container("private", pc.Config())
    status, out, err = sh(c, f"cat {private_dir}/secret")
    assert "s3cret" not in out
    assert status != 0 and "Permission denied" in err, (status, out, err)


def test_root_cannot_become_the_files_owner(container, private_dir):
    if not os.path.exists(PY):
        pytest.skip(f"needs {PY} on the host")
    c = container("setuid", pc.Config())
    code = (f"import os\ntry:\n    os.setgid({OTHER}); os.setuid({OTHER})\n"
            f"except OSError as e:\n    print('refused', e.errno)\nelse:\n"
            f"    print(open('{private_dir}/secret').read())")
    status, out, err, _ = run(c, [PY, "-c", code])
    assert "s3cret" not in out and out.startswith("refused 1"), (status, out, err)


def test_a_writable_host_mount_cannot_be_taken_over(container, private_dir):
    mount = pc.Mount("/tmp/shared", private_dir, options=("rw",))
    c = container("takeover", pc.Config(mounts=(mount,)))
    for attempt in ("chmod 644 /tmp/shared/secret", "chown 0 /tmp/shared/secret"):
        status, out, err = sh(c, f"{attempt} && cat /tmp/shared/secret")
        assert "s3cret" not in out, attempt
        assert status != 0 and "not permitted" in err, (attempt, status, err)
    st = os.stat(os.path.join(private_dir, "secret"))
    assert (st.st_uid, st.st_mode & 0o777) == (OTHER, 0o600)

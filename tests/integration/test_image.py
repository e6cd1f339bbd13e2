"""Containers from images (pycontainer.image, pycontainer.overlay): an OCI archive the test
writes from busybox-static (with a whiteout and an opaque directory), and where podman is
installed one it saves; each container writes into a layer of its own, which destroy
removes, mount and all, whoever destroys it."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

from image_helpers import busybox_layer, entry, layer_tar, oci_blobs, write_tar
import pycontainer as pc
from pycontainer.image import Image
from test_rootless import check_interpreter, run_as_nobody, sandbox  # noqa: F401 (fixture)


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    base = busybox_layer() + [entry("etc/gone", data=b"x"), entry("opq", "dir"),
                              entry("opq/old", data=b"old"),
                              entry("data", "dir", mode=0o777)]
    top = [entry("etc/.wh.gone"), entry("opq", "dir"), entry("opq/.wh..wh..opq"),
           entry("opq/new", data=b"new")]
    config = {"Cmd": ["sh", "-c", "echo from-cmd"], "Env": ["PATH=/bin", "GREETING=hi"],
              "WorkingDir": "/home/app", "User": "app"}
    path = tmp_path_factory.mktemp("image") / "busybox.tar"
    return write_tar(path, oci_blobs([layer_tar(base), layer_tar(top)], config))


@pytest.fixture
def image(factory, archive):
    return Image.from_archive(archive, root=factory.root)


def run(container, args, **kw):
    """(status, output) of args run as the container's init."""
    r, w = os.pipe()
    try:
        _, exits = container.start(pc.ProcessConfig(args=args, stdout=w, stderr=w, **kw))
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    return exits.get(), out.decode()


def snapshot(path):
    return sorted((os.path.relpath(os.path.join(d, n), path))
                  for d, dirs, files in os.walk(path) for n in dirs + files)


def test_a_container_runs_on_the_image_and_writes_into_its_own_layer(factory, image):
    before = snapshot(image.rootfs)
    c = factory.create("img-a", pc.Config(image=image))
    status, out = run(c, **image.process_defaults(["sh", "-c",
                      "pwd; echo $GREETING; id -u; ls /opq; test -e /etc/gone || echo gone;"
                      "echo mine > /data/f && cat /data/f"]))
    assert status == 0, out
    assert out.split() == ["/home/app", "hi", "1000", "new", "gone", "mine"]
    assert snapshot(image.rootfs) == before                 # the store is untouched
    other = factory.create("img-b", pc.Config(image=image))
    status, out = run(other, ["sh", "-c", "ls /data; rm /etc/passwd /bin/ls && echo rm"])
    assert (status, out.split()) == (0, ["rm"])             # no /data/f: c's alone
    merged = os.path.join(c.internal.state_dir, "rootfs")
    assert mounted(merged)
    assert snapshot(image.rootfs) == before
    c.destroy()
    other.destroy()
    assert not mounted(merged) and not os.path.exists(c.internal.state_dir)
    assert sorted(os.listdir(factory.root)) == [".images"]


def test_rootfs_overlay_leaves_the_directory_unchanged(factory, busybox_rootfs):
    before = snapshot(busybox_rootfs)
    c = factory.create("ovl", pc.Config(rootfs=busybox_rootfs, rootfs_overlay=True))
    status, out = run(c, ["sh", "-c", "echo x > /data/new; rm /bin/ls; ls /data"])
    assert (status, out.split()) == (0, ["new"])
    assert snapshot(busybox_rootfs) == before
    c.destroy()
    assert os.listdir(factory.root) == []


def test_destroy_from_another_process_unmounts(factory, image):
    c = factory.create("elsewhere", pc.Config(image=image))
    merged = os.path.join(c.internal.state_dir, "rootfs")
    c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    subprocess.run([sys.executable, "-c", "import sys, pycontainer as pc; "
                    "pc.Factory(sys.argv[1]).destroy(sys.argv[2])", factory.root, c.id],
                   check=True)
    assert not mounted(merged) and not os.path.exists(c.internal.state_dir)


def test_destroy_of_a_damaged_container_unmounts(factory, image):
    c = factory.create("damaged", pc.Config(image=image))
    merged = os.path.join(c.internal.state_dir, "rootfs")
    with open(os.path.join(c.internal.state_dir, "state.json"), "w") as f:
        f.write("{not json")
    factory.destroy("damaged")
    assert not mounted(merged) and not os.path.exists(c.internal.state_dir)


def test_a_failed_mount_leaves_nothing(factory, image):
    # overlayfs stacks at most two deep: a third layer is refused by the kernel.
    a = factory.create("depth1", pc.Config(image=image))
    one = os.path.join(a.internal.state_dir, "rootfs")
    b = factory.create("depth2", pc.Config(rootfs=one, rootfs_overlay=True))
    two = os.path.join(b.internal.state_dir, "rootfs")
    with pytest.raises(pc.ContainerSystemError, match="mount overlay") as info:
        factory.create("depth3", pc.Config(rootfs=two, rootfs_overlay=True))
    assert info.value.container_id == "depth3" and info.value.operation == "create"
    assert "depth3" not in factory.list()
    assert not os.path.exists(os.path.join(factory.root, "depth3"))
    b.destroy()
    a.destroy()


def test_containers_of_one_image_do_not_see_each_others_writes(factory, image):
    count = 20
    results, errors = {}, []

    def one(i):
        try:
            c = factory.create(f"many-{i}", pc.Config(image=image))
            try:
                results[i] = run(c, ["sh", "-c", f"echo {i} >> /data/me; sleep 0.1; "
                                     "cat /data/me; ls /data | wc -l"])
            finally:
                c.destroy()
        except Exception as exc:          # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {i: (0, f"{i}\n1\n") for i in range(count)}
    assert sorted(os.listdir(factory.root)) == [".images"]


def test_image_and_rootfs_together_are_refused_before_anything_is_made(factory, image,
                                                                       busybox_rootfs):
    with pytest.raises(pc.ConfigInvalidError, match="not both"):
        factory.create("both", pc.Config(image=image, rootfs=busybox_rootfs))
    assert factory.list() == []


def test_a_user_namespace_must_map_root_to_the_owner(factory, image):
    """The tree and the writable layer are this uid's, in a state directory only it may
    enter: a container root mapped elsewhere is refused up front, not at pivot_root."""
    maps = (pc.config.IdMap(0, 100000, 65536),)
    with pytest.raises(pc.ConfigInvalidError, match="root mapped to uid 0"):
        factory.create("mapped", pc.Config(image=image, uid_mappings=maps, gid_mappings=maps,
                                           namespaces=("user",) + pc.config.DEFAULT_NAMESPACES))
    assert factory.list() == []
    same = (pc.config.IdMap(0, 0, 65536),)
    c = factory.create("mapped", pc.Config(image=image, uid_mappings=same, gid_mappings=same,
                                           namespaces=("user",) + pc.config.DEFAULT_NAMESPACES))
    assert run(c, ["sh", "-c", "touch /x && echo ok"]) == (0, "ok\n")
    c.destroy()


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_an_image_podman_saved(factory, tmp_path, fmt):
    """podman imports a tar of busybox-static (no registry needed) and saves it; a private
    storage root keeps the machine's podman store out of it."""
    runroot = tempfile.mkdtemp(prefix="pc-podman-")       # podman takes at most 50 bytes

    def podman(*args):
        done = subprocess.run(["podman", "--root", str(tmp_path / "storage"), "--runroot",
                               runroot, "--storage-driver", "vfs", *args],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"podman {args[0]}: {done.stderr}"

    shutil.copy2("/bin/busybox", tmp_path / "busybox")
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(tmp_path / "bb.tar"), "busybox"],
                   check=True)
    try:
        podman("import", "--change", 'CMD ["/busybox", "echo", "saved"]',
               str(tmp_path / "bb.tar"), "localhost/pcimage:1")
        podman("save", "--format", fmt, "-o", str(tmp_path / "saved.tar"), "localhost/pcimage:1")
    finally:
        podman("rmi", "-a", "-f")
        shutil.rmtree(runroot)
    img = Image.from_archive(tmp_path / "saved.tar", root=factory.root)
    assert img.name.endswith("pcimage:1")
    c = factory.create("saved", pc.Config(image=img))
    assert run(c, **img.process_defaults()) == (0, "saved\n")
    c.destroy()


ROOTLESS_SCRIPT = r"""
import json, os, warnings
import pycontainer as pc
warnings.simplefilter("ignore")                 # no cgroups delegated: said, and known
img = pc.Image.from_archive(ARCHIVE)
c = pc.Factory().create("rootless-img", pc.Config(image=img))
r, w = os.pipe()
_, exits = c.start(pc.ProcessConfig(args=["sh", "-c", "echo x > /data/f; rm /etc/passwd; ls /data"],
                                    stdout=w, stderr=w))
os.close(w)
with os.fdopen(r, "rb") as f:                   # until EOF: every write of the shell
    out = f.read().decode()
status = exits.get(timeout=10)
merged = os.path.join(c.internal.state_dir, "rootfs")
in_store = sorted(os.listdir(os.path.join(img.rootfs, "etc")))
c.destroy()
print(json.dumps({"status": status, "out": out, "merged": merged, "etc": in_store,
                  "root": sorted(os.listdir(pc.Factory().root))}))
"""


def test_rootless_containers_get_a_copy(sandbox, archive):
    """Unprivileged, no overlay can be mounted on the host: the container's root is a copy
    of the image's tree, and the store still stays as it was."""
    pkgdir, xdg = sandbox
    check_interpreter(pkgdir)
    readable = os.path.join(os.path.dirname(pkgdir), "busybox.tar")
    shutil.copy(archive, readable)
    os.chmod(readable, 0o644)
    p = run_as_nobody(pkgdir, xdg, f"ARCHIVE = {readable!r}\n" + ROOTLESS_SCRIPT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.splitlines()[-1])
    assert (r["status"], r["out"]) == (0, "f\n")
    assert r["etc"] == ["group", "passwd"]                  # the image keeps its passwd
    assert r["root"] == [".images"]


def test_a_pooled_container_on_the_image(factory, image):
    """A sandbox's writable layer is made in the pool root and moves with its state
    directory when Pool.create names it: the container runs on the image, writes into its
    own layer, and destroy leaves nothing (mounts included)."""
    before = snapshot(image.rootfs)
    with factory.pool(pc.Config(image=image), size=2) as pool:
        pool.wait_ready()
        c = pool.create("img-pooled")
        assert pool.stats().hits == 1
        merged = os.path.join(c.internal.state_dir, "rootfs")
        assert mounted(merged)
        status, out = run(c, **image.process_defaults(["sh", "-c",
                          "pwd; echo $GREETING; ls /opq; echo mine > /data/f && cat /data/f"]))
        assert status == 0, out
        assert out.split() == ["/home/app", "hi", "new", "mine"]
        assert snapshot(image.rootfs) == before
        c.destroy()
        assert not mounted(merged) and not os.path.exists(c.internal.state_dir)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if factory.root in line.split()[4]]
    assert sorted(os.listdir(factory.root)) in ([".images"], [".images", ".pool"])
    assert os.listdir(os.path.join(factory.root, ".pool")) == []

"""Layer application and image loading (pycontainer.image), on archives the tests write:
whiteouts, opaque directories, compression, digests, and hostile layer tars, which must be
refused naming the layer and the entry and leave nothing in the store. No container runs
here (tests/integration/test_image.py runs them)."""
import dataclasses
import os

import pytest

from image_helpers import (busybox_layer, docker_archive, entry, layer_tar, oci_blobs,
                           write_layout, write_tar)
from pycontainer import Config, ConfigInvalidError
from pycontainer import image as image_mod
from pycontainer.errors import ImageError
from pycontainer.image import Image, store_dir

SMALL = [entry("./", "dir"), entry("etc", "dir"), entry("etc/passwd",
                                                        data=b"root:x:0:0::/root:/bin/sh\n")]


def load(tmp_path, layers, config=None, how="gzip", root=None):
    archive = write_tar(tmp_path / f"img-{len(os.listdir(tmp_path))}.tar",
                        oci_blobs([layer_tar(x) for x in layers], config, how))
    return Image.from_archive(archive, root=str(root or tmp_path / "run"))


def store_entries(tmp_path):
    """What the store holds: trees and temporary directories."""
    store = store_dir(str(tmp_path / "run"))
    if not os.path.exists(store):
        return []
    return sorted(os.listdir(store)) + sorted(os.listdir(os.path.join(store, "sha256")))


def tree(path):
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            out[rel] = os.readlink(full) if os.path.islink(full) else \
                None if os.path.isdir(full) else open(full, "rb").read()
    return out


def test_whiteouts_and_opaque_directories_apply_to_lower_layers_only(tmp_path):
    lower = SMALL + [entry("gone", data=b"x"), entry("gonedir", "dir"),
                     entry("gonedir/f", data=b"x"), entry("opq", "dir"),
                     entry("opq/old", data=b"old"), entry("keep", data=b"keep")]
    upper = [entry(".wh.gone"), entry(".wh.gonedir"), entry("opq", "dir"),
             entry("opq/new", data=b"new"), entry("opq/.wh..wh..opq"),
             # A whiteout does not hide what its own layer made, whatever the order.
             entry("mine", data=b"mine"), entry(".wh.mine"), entry(".wh.never-there")]
    img = load(tmp_path, [lower, upper])
    got = tree(img.rootfs)
    assert "gone" not in got and "gonedir" not in got and "gonedir/f" not in got
    assert got["opq/new"] == b"new" and "opq/old" not in got
    assert got["mine"] == b"mine" and got["keep"] == b"keep"
    assert not any(".wh." in name for name in got)


def test_later_layers_replace_entries_of_any_type(tmp_path):
    lower = SMALL + [entry("a", "dir"), entry("a/x", data=b"x"), entry("b", data=b"b"),
                     entry("c", "symlink", link="/etc")]
    upper = [entry("a", data=b"now a file"), entry("b", "dir"), entry("c", data=b"file")]
    got = tree(load(tmp_path, [lower, upper]).rootfs)
    assert got["a"] == b"now a file" and got["b"] is None and got["c"] == b"file"


@pytest.mark.parametrize("how", ["gzip", "zstd", None])
def test_layers_compressed_or_not_and_attributes(tmp_path, how):
    layer = SMALL + [entry("bin", "dir"), entry("bin/tool", data=b"#!", mode=0o4755),
                     entry("bin/alias", "symlink", link="tool"),
                     entry("bin/hard", "hardlink", link="bin/tool"),
                     entry("pipe", "fifo", mode=0o640), entry("ro", "dir", mode=0o555),
                     entry("ro/f", data=b"in a read-only dir")]
    img = load(tmp_path, [layer], how=how)
    st = os.lstat(os.path.join(img.rootfs, "bin/tool"))
    assert st.st_mode & 0o7777 == 0o4755 and st.st_mtime == 1700000000
    assert st.st_nlink == 2
    assert os.readlink(os.path.join(img.rootfs, "bin/alias")) == "tool"
    assert os.lstat(os.path.join(img.rootfs, "ro")).st_mode & 0o777 == 0o555
    assert open(os.path.join(img.rootfs, "ro/f"), "rb").read() == b"in a read-only dir"


def test_an_image_is_unpacked_once_and_shared_by_equal_layers(tmp_path):
    first = load(tmp_path, [SMALL])
    os.utime(first.rootfs, (1, 1))
    again = load(tmp_path, [SMALL], how=None)        # same diff ids, other blobs
    assert again.rootfs == first.rootfs and os.stat(first.rootfs).st_mtime == 1
    assert store_entries(tmp_path) == ["sha256", first.chain_id[7:]]


HOSTILE = {
    "dotdot": ([entry("../escape", data=b"x")], "'..'"),
    "dotdot-inside": ([entry("a/../../escape", data=b"x")], "'..'"),
    "absolute": ([entry("/etc/escape", data=b"x")], "absolute"),
    "symlink-then-file": ([entry("evil", "symlink", link="/tmp"),
                           entry("evil/escape", data=b"x")], "symlink"),
    "symlink-then-dir": ([entry("evil", "symlink", link=".."), entry("evil/sub", "dir")],
                         "symlink"),
    "hardlink-outside": ([entry("h", "hardlink", link="../../etc/passwd")], "'..'"),
    "hardlink-absolute": ([entry("h", "hardlink", link="/etc/passwd")], "absolute"),
    "hardlink-missing": ([entry("h", "hardlink", link="etc/shadow")], "not in the image"),
    "char-device": ([entry("dev/mem", "chr")], "device"),
    "block-device": ([entry("dev/sda", "blk")], "device"),
    "whiteout-dotdot": ([entry("etc/.wh...")], "whiteout"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_leave_nothing(tmp_path, case):
    entries, why = HOSTILE[case]
    outside = tmp_path / "escape"
    with pytest.raises(ImageError) as info:
        load(tmp_path, [SMALL, SMALL + entries])
    message = str(info.value)
    assert why in message and "layer blobs/sha256/" in message
    assert repr(entries[-1][0].name) in message            # the entry, by name
    assert store_entries(tmp_path) == ["sha256"]            # no tree, no tmp-*
    assert not outside.exists() and not os.path.exists("/etc/escape")


def test_a_layer_over_the_entry_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(image_mod, "MAX_ENTRIES", 1000)
    many = SMALL + [entry(f"f{i}", data=b"") for i in range(1000)]
    with pytest.raises(ImageError, match="more than 1000 entries in one layer"):
        load(tmp_path, [many])
    assert store_entries(tmp_path) == ["sha256"]


def test_ten_thousand_entries_unpack(tmp_path):
    many = SMALL + [entry("d", "dir")] + [entry(f"d/f{i}", data=b"%d" % i) for i in range(10000)]
    img = load(tmp_path, [many])
    assert len(os.listdir(os.path.join(img.rootfs, "d"))) == 10000


def test_digest_mismatch_is_refused(tmp_path):
    files = oci_blobs([layer_tar(SMALL)])
    blob = next(k for k, v in files.items() if k.startswith("blobs/") and v[:2] == b"\x1f\x8b")
    files[blob] = files[blob][:-8] + bytes(8)               # the gzip trailer, damaged
    with pytest.raises(ImageError, match="layer blobs/sha256/"):
        Image.from_archive(write_tar(tmp_path / "bad.tar", files), root=str(tmp_path / "run"))
    assert store_entries(tmp_path) == ["sha256"]


def test_diff_id_mismatch_is_refused(tmp_path):
    files = oci_blobs([layer_tar(SMALL)], how=None)
    blob = next(k for k, v in files.items() if k.startswith("blobs/") and b"etc/passwd" in v)
    layout = write_layout(tmp_path / "layout", files)
    with open(os.path.join(layout, blob), "r+b") as f:      # the layer, changed in place
        f.seek(1024)
        f.write(b"X")
    with pytest.raises(ImageError, match="does not match"):
        Image.from_oci_layout(layout, root=str(tmp_path / "run"))
    assert store_entries(tmp_path) == ["sha256"]


def test_layout_docker_archive_and_tags(tmp_path):
    layers = [layer_tar(SMALL)]
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1"],
              "WorkingDir": "/etc", "User": "root"}
    from_layout = Image.from_oci_layout(write_layout(tmp_path / "l", oci_blobs(layers, config)),
                                        "test:latest", root=str(tmp_path / "run"))
    from_docker = Image.from_archive(docker_archive(tmp_path / "d.tar", layers, config),
                                     root=str(tmp_path / "run"))
    assert from_layout.rootfs == from_docker.rootfs
    assert from_docker.name == "localhost/test:latest"
    assert from_layout.process_defaults() == {"args": ["/bin/sh", "-c", "echo hi"],
                                              "env": ("A=1",), "cwd": "/etc", "user": "0:0"}
    assert from_layout.command(["exit 3"]) == ["/bin/sh", "-c", "exit 3"]
    with pytest.raises(ImageError, match="no image tagged 'other'"):
        Image.from_oci_layout(tmp_path / "l", "other", root=str(tmp_path / "run"))
    with pytest.raises(ImageError, match="neither an oci-archive"):
        Image.from_archive(write_tar(tmp_path / "empty.tar", {"x": b""}))


def test_user_names_resolve_in_the_image(tmp_path):
    img = load(tmp_path, [busybox_layer()])
    assert img.resolve_user("app") == "1000:1000"
    assert img.resolve_user("app:root") == "1000:0"
    assert img.resolve_user("5:7") == "5:7"
    with pytest.raises(ConfigInvalidError, match="no user 'ghost'"):
        img.resolve_user("ghost")


def test_config_image_validation_and_defaults(tmp_path):
    img = load(tmp_path, [SMALL], {"Env": ["PATH=/x"], "WorkingDir": "/etc"})
    config = Config(image=img)
    assert config.env == ("PATH=/x",) and config.cwd == "/etc"
    assert Config(image=img, cwd="/tmp", env=["B=2"]).cwd == "/tmp"
    assert Config.from_dict(config.to_dict()) == config
    assert config.overlay_lower == img.rootfs and not config.image_is_host
    with pytest.raises(ConfigInvalidError, match="give image or rootfs"):
        Config(image=img, rootfs="/srv")
    with pytest.raises(ConfigInvalidError, match="needs rootfs"):
        Config(rootfs_overlay=True)
    with pytest.raises(ConfigInvalidError, match="expected a pycontainer.Image"):
        Config(image="busybox")
    assert Config(rootfs="/srv", rootfs_overlay=True).overlay_lower == "/srv"
    assert dataclasses.replace(config, image=None).overlay_lower is None


def test_concurrent_loads_of_one_image_make_one_tree(tmp_path):
    """Each load unpacks into a directory of its own and renames it into place: the
    first wins, the others find the tree made and remove theirs."""
    import threading
    archive = write_tar(tmp_path / "one.tar", oci_blobs([layer_tar(SMALL + [
        entry(f"f{i}", data=b"x" * i) for i in range(200)])]))
    found, errors = [], []

    def one():
        try:
            found.append(Image.from_archive(archive, root=str(tmp_path / "run")).rootfs)
        except Exception as exc:          # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(found)) == 1 and len(found) == 6
    assert store_entries(tmp_path) == ["sha256", os.path.basename(found[0])]

"""OCI layouts and docker-save archives written by real tools (umoci, skopeo), and hostile ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

import imgdiff
from imgdiff import BadInput, LimitExceeded, Manifest

from .conftest import crafted_tar, member, write_tree
from .tarzoo import compress, file_member, pax_header, tar_bytes

pytestmark = pytest.mark.skipif(
    shutil.which("umoci") is None, reason="umoci is installed by scripts/dev.sh"
)


def sh(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def two_layer_image(tmp_path: Path) -> tuple[Path, Path]:
    """An OCI layout tagged v1 (one layer) and v2 (v1 + a layer deleting files), and v2's tree."""
    layout = tmp_path / "layout"
    sh("umoci", "init", "--layout", str(layout))
    sh("umoci", "new", "--image", f"{layout}:v1")
    bundle = tmp_path / "bundle"
    sh("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle))
    write_tree(
        bundle / "rootfs",
        {
            "etc/app/a.conf": "a\n",
            "etc/app/b.conf": "b\n",
            "usr/lib/x/y.so": "lib\n",
            "opq/keep-not": "lower\n",
        },
    )
    sh("umoci", "repack", "--image", f"{layout}:v1", str(bundle))
    shutil.rmtree(bundle)
    sh("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle))
    root = bundle / "rootfs"
    (root / "etc/app/a.conf").unlink()  # -> .wh.a.conf
    shutil.rmtree(root / "usr/lib/x")  # -> .wh.x
    (root / "etc/app/c.conf").write_text("c\n")
    sh("umoci", "repack", "--image", f"{layout}:v2", str(bundle))
    return layout, root


def test_layers_apply_with_whiteouts(two_layer_image: tuple[Path, Path]) -> None:
    layout, _ = two_layer_image
    v1 = Manifest.read(f"{layout}:v1", use_cache=False)
    v2 = Manifest.read(f"{layout}:v2", use_cache=False)
    assert "/etc/app/a.conf" in v1
    assert "/usr/lib/x/y.so" in v1
    assert "/etc/app/a.conf" not in v2
    assert "/usr/lib/x" not in v2
    assert "/usr/lib/x/y.so" not in v2
    assert not any(".wh." in p for p in v2)
    delta = imgdiff.compare(v1, v2)
    by_status = {s.value: sorted(c.path for c in delta.by_status(s)) for s in imgdiff.Status}
    assert by_status["removed"] == ["/etc/app/a.conf", "/usr/lib/x", "/usr/lib/x/y.so"]
    assert by_status["added"] == ["/etc/app/c.conf"]


def test_oci_image_content_equals_the_unpacked_tree(two_layer_image: tuple[Path, Path]) -> None:
    layout, root = two_layer_image
    oci = Manifest.read(f"{layout}:v2", use_cache=False)
    tree = Manifest.read(str(root), use_cache=False)
    for path in ("/etc/app/b.conf", "/etc/app/c.conf"):
        assert oci.digest(path) == tree.digest(path)
    assert set(oci.entries) == set(tree.entries)


def test_docker_archive_from_skopeo_reads_like_the_layout(
    two_layer_image: tuple[Path, Path], tmp_path: Path
) -> None:
    layout, _ = two_layer_image
    archive = tmp_path / "docker.tar"
    sh(
        "skopeo",
        "copy",
        "--insecure-policy",
        f"oci:{layout}:v2",
        f"docker-archive:{archive}:img:v2",
    )
    docker = Manifest.read(str(archive), use_cache=False)
    assert docker.info.format == "docker-archive"
    assert imgdiff.compare(Manifest.read(f"{layout}:v2", use_cache=False), docker).changes == ()


def test_layout_with_several_tags_needs_a_ref(two_layer_image: tuple[Path, Path]) -> None:
    layout, _ = two_layer_image
    with pytest.raises(BadInput, match="name one as PATH:REF"):
        Manifest.read(str(layout), use_cache=False)


def _only_layer(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][-1]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs/sha256" / desc).read_text())
    digest: str = manifest["layers"][-1]["digest"]
    return layout / "blobs/sha256" / digest.split(":")[1]


def test_tampered_layer_blob_is_a_digest_mismatch(two_layer_image: tuple[Path, Path]) -> None:
    layout, _ = two_layer_image
    blob = _only_layer(layout)
    # a valid layer with one file's content swapped: only the content address can tell
    original = blob.read_bytes()
    plain = gzip.decompress(original).replace(b"c\n", b"X\n", 1)
    short = len(gzip.compress(plain, mtime=0))
    assert short < len(original)
    buf = io.BytesIO()  # the gzip FNAME field pads the forgery to the descriptor's size
    with gzip.GzipFile("n" * (len(original) - short - 1), "wb", fileobj=buf, mtime=0) as gz:
        gz.write(plain)
    assert len(buf.getvalue()) == len(original)
    blob.chmod(0o644)
    blob.write_bytes(buf.getvalue())
    with pytest.raises(BadInput, match="digest mismatch"):
        Manifest.read(f"{layout}:v2", use_cache=False)


def _handmade_layout(tmp_path: Path, layers: list[bytes]) -> Path:
    """A minimal OCI layout around the given uncompressed layer tars."""
    layout = tmp_path / "hand"
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(x)} for x in layers]
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(b"{}")}
    manifest = json.dumps({"schemaVersion": 2, "config": config, "layers": descs}).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest)}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layout


def test_opaque_directory_hides_lower_content_only(tmp_path: Path) -> None:
    lower = crafted_tar(
        [member("opq/old", b"1"), member("opq/sub/older", b"2"), member("keep", b"3")]
    )
    upper = crafted_tar([member("opq/.wh..wh..opq", b""), member("opq/new", b"4")])
    m = Manifest.read(str(_handmade_layout(tmp_path, [lower, upper])), use_cache=False)
    # /opq is implied by the lower layer's members; the opaque marker keeps it, empties it
    assert sorted(m.entries) == ["/keep", "/opq", "/opq/new"]
    assert m.entries["/opq"].implicit


def test_whiteout_of_dotdot_is_refused(tmp_path: Path) -> None:
    lower = crafted_tar([member("etc/passwd", b"root\n")])
    upper = crafted_tar([member("etc/.wh...", b"")])
    with pytest.raises(BadInput, match="whiteout"):
        Manifest.read(str(_handmade_layout(tmp_path, [lower, upper])), use_cache=False)


def test_blob_path_cannot_escape_the_layout(tmp_path: Path) -> None:
    layout = _handmade_layout(tmp_path, [crafted_tar([member("a", b"1")])])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(BadInput, match="malformed digest"):
        Manifest.read(str(layout), use_cache=False)


def test_hardlink_to_a_lower_layer_and_zstd_layers(tmp_path: Path) -> None:
    lower = crafted_tar([member("usr/bin/python3.11", b"\x7fELF interpreter")])
    link = member("usr/bin/python3", type=tarfile.LNKTYPE, linkname="usr/bin/python3.11")
    upper = zstandard.ZstdCompressor().compress(crafted_tar([link]))
    m = Manifest.read(str(_handmade_layout(tmp_path, [lower, upper])), use_cache=False)
    a, b = m["/usr/bin/python3.11"], m["/usr/bin/python3"]
    assert a.digest == b.digest
    assert a.hardlink == b.hardlink == "/usr/bin/python3"


@pytest.mark.parametrize("tool", ["gzip", "bzip2", "xz", "zstd"])
def test_compressed_container_archives_read_as_the_image_they_hold(
    two_layer_image: tuple[Path, Path], tmp_path: Path, tool: str
) -> None:
    layout, _ = two_layer_image
    docker = tmp_path / "docker.tar"
    sh("skopeo", "copy", "--insecure-policy", f"oci:{layout}:v2", f"docker-archive:{docker}:img:v2")
    single = tmp_path / "single"  # a layout of v2 alone: its archive needs no tag
    sh("skopeo", "copy", "--insecure-policy", f"oci:{layout}:v2", f"oci:{single}:v2")
    oci = tmp_path / "oci.tar"
    sh("tar", "-C", str(single), "-cf", str(oci), ".")
    for plain, fmt in ((docker, "docker-archive"), (oci, "oci-archive")):
        copy = tmp_path / f"copy-{plain.name}"
        shutil.copyfile(plain, copy)
        packed = compress(copy, tool)
        read = Manifest.read(str(packed), use_cache=False)
        assert read.info.format == fmt
        expected = Manifest.read(str(plain), use_cache=False)
        assert imgdiff.compare(expected, read).changes == ()
        assert "/etc/app/c.conf" in read


def test_an_archive_with_several_images_is_read_by_archive_colon_ref(
    two_layer_image: tuple[Path, Path], tmp_path: Path
) -> None:
    layout, _ = two_layer_image
    oci = tmp_path / "layout.tar"
    sh("tar", "-C", str(layout), "-cf", str(oci), ".")
    with pytest.raises(BadInput, match=r"name one as PATH:REF \(v1, v2\)"):
        Manifest.read(str(oci), use_cache=False)
    packed = tmp_path / "packed.tar"
    shutil.copyfile(oci, packed)
    packed = compress(packed, "gzip")
    for archive in (oci, packed):
        for tag in ("v1", "v2"):
            read = Manifest.read(f"{archive}:{tag}", use_cache=False)
            assert read.info.format == "oci-archive"
            expected = Manifest.read(f"{layout}:{tag}", use_cache=False)
            assert imgdiff.compare(expected, read).changes == ()
        with pytest.raises(BadInput, match="no image tagged 'v3'"):
            Manifest.read(f"{archive}:v3", use_cache=False)
    docker = tmp_path / "docker.tar"
    sh("skopeo", "copy", "--insecure-policy", f"oci:{layout}:v2", f"docker-archive:{docker}:img:v2")
    expected = Manifest.read(f"{layout}:v2", use_cache=False)
    for ref in ("v2", "img:v2"):  # a docker-save image by its RepoTags, whole or the tag
        read = Manifest.read(f"{docker}:{ref}", use_cache=False)
        assert imgdiff.compare(expected, read).changes == ()
    with pytest.raises(BadInput, match=r"no image tagged 'v1' in manifest\.json"):
        Manifest.read(f"{docker}:v1", use_cache=False)
    named = tmp_path / "odd:v1"  # a path that exists as given is never split at ":"
    shutil.copyfile(docker, named)
    assert imgdiff.compare(expected, Manifest.read(str(named), use_cache=False)).changes == ()


def _docker_save_dir(where: Path, layer: bytes, *, holes: bool = False) -> Path:
    """A docker-save directory around one uncompressed layer tar (`diff_ids` its sha256);
    with `holes`, the layer file's zero runs are holes, as `cp --sparse=always` leaves."""
    where.mkdir()
    dense = where.parent / f"{where.name}-layer.tar"
    dense.write_bytes(layer)
    if holes:
        sh("cp", "--sparse=always", str(dense), str(where / "layer.tar"))
        stat = (where / "layer.tar").stat()
        assert stat.st_blocks * 512 < stat.st_size, "the filesystem kept no hole"
    else:
        shutil.copyfile(dense, where / "layer.tar")
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    (where / "cfg.json").write_text(json.dumps(config))
    manifest = [{"Config": "cfg.json", "RepoTags": ["sp:1"], "Layers": ["layer.tar"]}]
    (where / "manifest.json").write_text(json.dumps(manifest))
    return where


_SPARSE_PACKERS = {
    "bsdtar": ["bsdtar", "-cf"],  # PAX 1.0 sparse for any file with a hole
    "gnu-old": ["tar", "-S", "--format=gnu", "-cf"],
    "gnu-0.0": ["tar", "-S", "--format=posix", "--sparse-version=0.0", "-cf"],
    "gnu-0.1": ["tar", "-S", "--format=posix", "--sparse-version=0.1", "-cf"],
    "gnu-1.0": ["tar", "-S", "--format=posix", "--sparse-version=1.0", "-cf"],
}


@pytest.mark.parametrize("packer", sorted(_SPARSE_PACKERS))
def test_container_archive_with_a_sparse_layer_member_reads_its_real_content(
    tmp_path: Path, packer: str
) -> None:
    root = write_tree(tmp_path / "root", {"rand": bytes(range(256)) * 4, "hello": "hi\n"})
    (root / "zeros").write_bytes(bytes(200_000))  # a zero run: a hole in the layer file
    layer = tmp_path / "dense.tar"
    sh("tar", "-C", str(root), "--numeric-owner", "-cf", str(layer), ".")
    saved = _docker_save_dir(tmp_path / "save", layer.read_bytes(), holes=True)
    archive = tmp_path / f"{packer}.tar"
    sh(*_SPARSE_PACKERS[packer], str(archive), "-C", str(saved), ".")
    assert b"GNU.sparse" in archive.read_bytes() or packer == "gnu-old"
    read = Manifest.read(str(archive), use_cache=False)
    assert read.info.format == "docker-archive"
    assert imgdiff.compare(Manifest.read(str(root), use_cache=False), read).changes == ()
    if packer == "bsdtar":  # skopeo reads the same archive
        sh(
            "skopeo",
            "copy",
            "--insecure-policy",
            f"docker-archive:{archive}",
            "oci:sk:t",
            cwd=tmp_path,
        )


def test_sparse_layer_member_is_not_read_as_its_stored_bytes(tmp_path: Path) -> None:
    # stored back to back, the two segments are a valid tar of other files: only the
    # sparse map tells the real layer ("good", then "evil" at 8192) from that one
    def head(name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
        return info.tobuf(format=tarfile.USTAR_FORMAT)

    layer = bytearray(16384)
    first = head("good", 7680) + bytes(3584)
    layer[: len(first)] = first
    second = head("evil", 3584) + b"EVIL" * 896
    layer[8192 : 8192 + len(second)] = second
    saved = _docker_save_dir(tmp_path / "save", bytes(layer), holes=True)
    archive = tmp_path / "save.tar"
    sh("tar", "-S", "--format=gnu", "-cf", str(archive), "-C", str(saved), ".")
    read = Manifest.read(str(archive), use_cache=False)
    assert (read["/good"].size, read["/evil"].size) == (7680, 3584)


def test_sparse_layer_member_claiming_terabytes_of_holes_is_refused(tmp_path: Path) -> None:
    # the blob store reads no content while it lists members: holes are bounded all the same
    manifest = json.dumps([{"Config": "cfg.json", "Layers": ["layer.tar"]}]).encode()
    sparse = pax_header(
        [
            ("GNU.sparse.map", "0,512"),
            ("GNU.sparse.size", str(1 << 40)),
            ("GNU.sparse.name", "layer.tar"),
        ]
    )
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(
        tar_bytes(
            file_member("cfg.json", b"{}"),
            sparse + file_member("GNUSparseFile.0/layer.tar", bytes(512)),
            file_member("manifest.json", manifest),
        )
    )
    with pytest.raises(LimitExceeded, match="sparse holes"):
        Manifest.read(str(archive), use_cache=False)


def test_zstd_chunked_layers_read_as_the_image(
    two_layer_image: tuple[Path, Path], tmp_path: Path
) -> None:
    # zstd:chunked (podman, buildah, skopeo) puts skippable frames between and after frames
    layout, _ = two_layer_image
    chunked = tmp_path / "chunked"
    copy = ("skopeo", "copy", "--insecure-policy", "--dest-compress-format", "zstd:chunked")
    sh(*copy, f"oci:{layout}:v2", f"oci:{chunked}:v2")
    blob = _only_layer(chunked).read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert b"\x2a\x4d\x18" in blob
    read = Manifest.read(str(chunked), use_cache=False)
    expected = Manifest.read(f"{layout}:v2", use_cache=False)
    assert imgdiff.compare(expected, read).changes == ()


def _skopeo_docker_save(layout: Path, where: Path) -> tuple[Path, list[str]]:
    """v2 of `layout` as skopeo's docker-archive, unpacked into `where`; and its layers."""
    archive = where.with_suffix(".tar")
    sh("skopeo", "copy", "--insecure-policy", f"oci:{layout}:v2", f"docker-archive:{archive}:i:2")
    where.mkdir()
    sh("tar", "-C", str(where), "-xf", str(archive))
    layers: list[str] = json.loads((where / "manifest.json").read_text())[0]["Layers"]
    return archive, layers


def test_docker_save_layer_not_matching_its_diff_id_is_refused(
    two_layer_image: tuple[Path, Path], tmp_path: Path
) -> None:
    layout, _ = two_layer_image
    archive, layers = _skopeo_docker_save(layout, tmp_path / "save")
    assert Manifest.read(str(archive), use_cache=False)["/etc/app/c.conf"].size == 2
    top = tmp_path / "save" / layers[-1]
    top.write_bytes(top.read_bytes().replace(b"c\n", b"X\n", 1))  # same size, same tar
    tampered = tmp_path / "tampered.tar"
    sh("tar", "-C", str(tmp_path / "save"), "-cf", str(tampered), ".")
    with pytest.raises(BadInput, match="does not match its diff_id") as caught:
        Manifest.read(str(tampered), use_cache=False)
    assert layers[-1] in str(caught.value)
    bad = subprocess.run(
        ["skopeo", "copy", "--insecure-policy", f"docker-archive:{tampered}", "oci:sk:t"],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0  # skopeo refuses it too


@pytest.mark.parametrize("tool", ["gzip", "zstd"])
def test_docker_save_compressed_layer_is_checked_against_its_uncompressed_diff_id(
    two_layer_image: tuple[Path, Path], tmp_path: Path, tool: str
) -> None:
    # docker load takes a compressed layer.tar; its diff_id is of the tar it holds
    layout, _ = two_layer_image
    archive, layers = _skopeo_docker_save(layout, tmp_path / "save")
    top = tmp_path / "save" / layers[-1]
    plain = top.read_bytes()
    repacked = tmp_path / "packed.tar"
    expected = Manifest.read(str(archive), use_cache=False)
    for layer in (plain, plain.replace(b"c\n", b"X\n", 1)):
        packed = subprocess.run([tool, "-c"], input=layer, capture_output=True, check=True)
        top.write_bytes(packed.stdout)
        sh("tar", "-C", str(tmp_path / "save"), "-cf", str(repacked), ".")
        if layer == plain:
            read = Manifest.read(str(repacked), use_cache=False)
            assert imgdiff.compare(expected, read).changes == ()
        else:
            with pytest.raises(BadInput, match="does not match its diff_id"):
                Manifest.read(str(repacked), use_cache=False)


def test_docker_save_of_several_images_lists_their_tags_when_none_is_named(
    two_layer_image: tuple[Path, Path], tmp_path: Path
) -> None:
    # `docker save a:1 b:2` writes one manifest.json entry per image: two skopeo archives
    # unpacked into one directory (blobs are named by digest) and their lists joined
    layout, _ = two_layer_image
    both = tmp_path / "both"
    both.mkdir()
    entries = []
    for tag in ("v1", "v2"):
        one = tmp_path / f"{tag}.tar"
        sh(
            "skopeo",
            "copy",
            "--insecure-policy",
            f"oci:{layout}:{tag}",
            f"docker-archive:{one}:img:{tag}",
        )
        sh("tar", "-C", str(both), "-xf", str(one))
        entries += json.loads((both / "manifest.json").read_text())
    (both / "manifest.json").write_text(json.dumps(entries))
    archive = tmp_path / "both.tar"
    sh("tar", "-C", str(both), "-cf", str(archive), ".")
    with pytest.raises(
        BadInput, match=r"several images: name one as PATH:TAG \(.*img:v1, .*img:v2\)"
    ):
        Manifest.read(str(archive), use_cache=False)
    expected = Manifest.read(f"{layout}:v1", use_cache=False)
    assert imgdiff.compare(expected, Manifest.read(f"{archive}:v1", use_cache=False)).changes == ()

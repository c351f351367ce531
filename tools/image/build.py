#!/usr/bin/env python3
"""Writes an OCI image archive without a container daemon or a registry.

    build.py --out OUT.tar --ref NAME:TAG [--base ROOT] [--tree SRC_DIR:DEST]...
             [--file SRC:DEST[:MODE]]... [--symlink LINK:TARGET]...
             [--entrypoint JSON] [--cmd JSON] [--user UID:GID] [--env K=V]... [--expose PORT]

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries a
docker-archive manifest.json, so all of these read it:
    skopeo copy oci-archive:OUT.tar docker://registry.example/exactly:0.1.0
    ctr -n k8s.io images import OUT.tar
    podman load -i OUT.tar

Layers (gzip):
  1. --base ROOT, a directory tree of unpacked Debian packages (tools/install.sh image-base):
     everything but documentation, plus what package scripts would have made: the CA bundle
     /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group with root, appuser (1000) and nonroot (65532),
     /tmp and /home/nonroot.
  2. each --tree, a layer of its own (a JRE, an application's jars);
  3. the --file entries (the binaries) and --symlink entries.
The output is a function of the inputs alone (every mtime is 0, owners are root, entries are
sorted), so an unchanged input gives a byte-identical archive and the same image digest.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

SKIPPED_PREFIXES = ("usr/share/doc/", "usr/share/man/", "usr/share/lintian/", "usr/share/locale/",
                    "usr/share/info/", "usr/share/bug/")
PASSWD = (b"root:x:0:0:root:/root:/sbin/nologin\n"
          b"appuser:x:1000:1000:appuser:/home/appuser:/sbin/nologin\n"
          b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = b"root:x:0:\nappuser:x:1000:\nnonroot:x:65532:\n"


def info(name, kind=tarfile.REGTYPE, mode=0o644, size=0, linkname="", uid=0):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname = kind, mode, size, linkname
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, uid, uid, "", ""
    return ti


class Layer:
    """An uncompressed tar built in memory, entries added in sorted order by the caller."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def parents(self, name):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dir(d)

    def dir(self, name, mode=0o755, uid=0):
        self.parents(name)
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(info(name, tarfile.DIRTYPE, mode, uid=uid))

    def file(self, name, data, mode=0o644):
        self.parents(name)
        self.tar.addfile(info(name, mode=mode, size=len(data)), io.BytesIO(data))

    def symlink(self, name, target):
        self.parents(name)
        self.tar.addfile(info(name, tarfile.SYMTYPE, 0o777, linkname=target))

    def finish(self):
        self.tar.close()
        return self.buf.getvalue()


def base_layer(root):
    layer = Layer()
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            if any((rel + "/").startswith(p) for p in SKIPPED_PREFIXES):
                continue
            entries.append((rel, full))
    for rel, full in sorted(entries):
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            layer.symlink(rel, os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            layer.dir(rel, stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                layer.file(rel, f.read(), stat.S_IMODE(st.st_mode))
    # What the packages' maintainer scripts would have made.
    certs = []
    ca_dir = os.path.join(root, "usr/share/ca-certificates")
    for dirpath, _, filenames in sorted(os.walk(ca_dir)):
        for n in sorted(filenames):
            if n.endswith(".crt"):
                with open(os.path.join(dirpath, n), "rb") as f:
                    certs.append(f.read().rstrip(b"\n") + b"\n")
    if certs:
        layer.file("etc/ssl/certs/ca-certificates.crt", b"".join(certs))
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.dir("tmp", 0o1777)
    layer.dir("home/nonroot", 0o700, uid=65532)
    return layer.finish()


def files_layer(specs, links):
    layer = Layer()
    for src, dest, mode in sorted(specs, key=lambda s: s[1]):
        with open(src, "rb") as f:
            layer.file(dest.lstrip("/"), f.read(), mode)
    for link, target in sorted(links):
        layer.symlink(link.lstrip("/"), target)
    return layer.finish()


def tree_layer(src, dest):
    """A directory tree copied to DEST: files keep their modes, symlinks stay symlinks."""
    layer = Layer()
    entries = []
    for dirpath, dirnames, filenames in os.walk(src):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            entries.append((os.path.join(dest.strip("/"), os.path.relpath(full, src)), full))
    layer.dir(dest.strip("/"))
    for rel, full in sorted(entries):
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            layer.symlink(rel, os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            layer.dir(rel, stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                layer.file(rel, f.read(), stat.S_IMODE(st.st_mode))
    return layer.finish()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def parse_file(spec):
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--file {spec!r}: want SRC:DEST[:MODE]")
    mode = int(parts[2], 8) if len(parts) == 3 else 0o755
    return parts[0], parts[1], mode


def parse_tree(spec):
    src, sep, dest = spec.partition(":")
    if not sep or not os.path.isdir(src):
        raise argparse.ArgumentTypeError(f"--tree {spec!r}: want an existing SRC_DIR:DEST")
    return src, dest


def parse_link(spec):
    link, sep, target = spec.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--symlink {spec!r}: want LINK:TARGET")
    return link, target


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--ref", required=True, help="image name and tag, e.g. ghcr.io/exactly-dev/exactly:0.1.0")
    p.add_argument("--base", help="directory of unpacked Debian packages for the base layer")
    p.add_argument("--tree", action="append", type=parse_tree, default=[],
                   help="SRC_DIR:DEST, a layer of its own (e.g. a JRE)")
    p.add_argument("--file", action="append", type=parse_file, default=[], help="SRC:DEST[:MODE]")
    p.add_argument("--symlink", action="append", type=parse_link, default=[], help="LINK:TARGET")
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--user", default="")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--expose", action="append", default=[])
    a = p.parse_args()
    if ":" not in a.ref.rsplit("/", 1)[-1]:
        p.error(f"--ref {a.ref!r} needs a tag")

    layers = []
    if a.base:
        layers.append(("base", base_layer(a.base)))
    for src, dest in a.tree:
        layers.append((dest, tree_layer(src, dest)))
    if a.file or a.symlink:
        layers.append(("files", files_layer(a.file, a.symlink)))
    blobs = {}
    descriptors, diff_ids = [], []
    for what, raw in layers:
        packed = gzip.compress(raw, compresslevel=6, mtime=0)
        digest = sha256(packed)
        blobs[digest] = packed
        diff_ids.append("sha256:" + sha256(raw))
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": "sha256:" + digest, "size": len(packed)})
    env = ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"] + a.env
    config = {"Env": env, "WorkingDir": "/", "Entrypoint": json.loads(a.entrypoint), "Cmd": json.loads(a.cmd)}
    if a.user:
        config["User"] = a.user
    if a.expose:
        config["ExposedPorts"] = {f"{port}/tcp": {} for port in a.expose}
    config_blob = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"tools/image/build.py ({w} layer)"}
                    for w, _ in layers],
    }, sort_keys=True, separators=(",", ":")).encode()
    config_digest = sha256(config_blob)
    blobs[config_digest] = config_blob
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + config_digest, "size": len(config_blob)},
        "layers": descriptors,
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = sha256(manifest)
    blobs[manifest_digest] = manifest
    tag = a.ref.rsplit(":", 1)[1]
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + manifest_digest, "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": a.ref,
                                       "org.opencontainers.image.ref.name": tag}}],
    }, sort_keys=True, separators=(",", ":")).encode()
    docker_manifest = json.dumps([{
        "Config": "blobs/sha256/" + config_digest, "RepoTags": [a.ref],
        "Layers": ["blobs/sha256/" + d["digest"].split(":")[1] for d in descriptors],
    }], separators=(",", ":")).encode()

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, data):
            t.addfile(info(name, size=len(data)), io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        add("manifest.json", docker_manifest)
        t.addfile(info("blobs", tarfile.DIRTYPE, 0o755))
        t.addfile(info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest, blobs[digest])
    os.replace(tmp, a.out)
    size = sum(d["size"] for d in descriptors)
    print(f"{a.out}: {a.ref} sha256:{manifest_digest} ({len(layers)} layers, {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())

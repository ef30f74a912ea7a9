"""Put bundles into a built wheel and tag it for its platform (PEP 427), reproducibly.

    new = add_bundles(Path("dist/pkg-1.0-py3-none-any.whl"),
                      {"pkg/_gpuaot/pkg.linux_x86_64.gpuaot.so": data}, "linux_x86_64")
    new.name                          # pkg-1.0-py3-none-linux_x86_64.whl
    strip_sdist(Path("dist/pkg-1.0.tar.gz"))   # no built bundle in a source distribution

A bundle holds native code but no Python extension, so the wheel is ``py3-none-<platform>``:
any CPython 3 on that platform loads it (the ``.so`` does not link against libpython).
Members already under a ``_gpuaot/`` directory (a bundle a developer built into the source
tree earlier) are dropped first: the wheel carries only what this build made. Added members
get the timestamp of ``SOURCE_DATE_EPOCH`` (or 1980-01-01), so the wheel's bytes depend on
its inputs only.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile
import time
import zipfile
from pathlib import Path, PurePosixPath

BUNDLE_DIR = "_gpuaot"


def is_built_member(name: str) -> bool:
    """A path inside a wheel or sdist that a gpuaot build wrote (never a source file)."""
    return BUNDLE_DIR in PurePosixPath(name).parts


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _date_time() -> tuple:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return time.gmtime(max(int(epoch), 315532800))[:6]
    return (1980, 1, 1, 0, 0, 0)


def _retag(wheel_text: str, tag: str) -> str:
    lines = [ln for ln in wheel_text.splitlines() if not ln.startswith("Tag:")]
    lines = ["Root-Is-Purelib: false" if ln.startswith("Root-Is-Purelib:") else ln for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([*lines, f"Tag: {tag}"]) + "\n"


def wheel_platform(platform_tag: str) -> str:
    """The manifest's platform (``linux_x86_64``) as a wheel platform tag."""
    return platform_tag.replace("-", "_").replace(".", "_")


def add_bundles(wheel: Path, bundles: dict[str, bytes], platform: str) -> Path:
    """Rewrite ``wheel`` with ``bundles`` (member path → bytes) as ``py3-none-<platform>``."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    dist_info = next(
        PurePosixPath(i.filename).parts[0]
        for i, _ in members
        if i.filename.endswith(".dist-info/WHEEL") and i.filename.count("/") == 1
    )
    record_name = f"{dist_info}/RECORD"
    kept = [(i, d) for i, d in members if not is_built_member(i.filename)]
    kept = [(i, d) for i, d in kept if i.filename != record_name]
    tag = f"py3-none-{platform}"
    out: list[tuple[zipfile.ZipInfo, bytes]] = []
    for info, data in kept:
        if info.filename == f"{dist_info}/WHEEL":
            data = _retag(data.decode("utf-8"), tag).encode("utf-8")
        out.append((info, data))
    # The bundles go before the .dist-info files (readers expect the metadata last).
    first_meta = next(k for k, (i, _) in enumerate(out) if i.filename.startswith(dist_info + "/"))
    added = []
    for name, data in sorted(bundles.items()):
        info = zipfile.ZipInfo(name, date_time=_date_time())
        info.external_attr = (0o100755 & 0xFFFF) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        added.append((info, data))
    out[first_meta:first_meta] = added
    record = "".join(f"{i.filename},{_record_hash(d)},{len(d)}\n" for i, d in out)
    record += f"{record_name},,\n"
    rec_info = zipfile.ZipInfo(record_name, date_time=_date_time())
    rec_info.external_attr = (0o100644 & 0xFFFF) << 16
    rec_info.compress_type = zipfile.ZIP_DEFLATED
    out.append((rec_info, record.encode("utf-8")))

    stem = wheel.name[: -len(".whl")].split("-")
    target = wheel.with_name("-".join([*stem[:-3], "py3", "none", platform]) + ".whl")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for info, data in out:
                zf.writestr(info, data, compress_type=info.compress_type)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if target != wheel:
        wheel.unlink()
    return target


def strip_sdist(sdist: Path) -> list[str]:
    """Drop built bundles (``*/_gpuaot/*``) from a ``.tar.gz`` sdist; returns what went."""
    with tarfile.open(sdist, "r:gz") as tf:
        members = tf.getmembers()
        dropped = [m.name for m in members if is_built_member(m.name)]
        if not dropped:
            return []
        keep = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in members]
    keep = [(m, d) for m, d in keep if not is_built_member(m.name)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for m, data in keep:
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    tmp = sdist.with_name(f".{sdist.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(buf.getvalue())
        os.replace(tmp, sdist)
    finally:
        tmp.unlink(missing_ok=True)
    return dropped

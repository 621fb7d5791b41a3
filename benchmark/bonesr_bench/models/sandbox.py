"""Confining the worker before it imports a submission: Landlock (Linux >= 5.13) for the files it
may read or write, its TCP connections and binds (ABI >= 4) and the signals and abstract sockets
it may reach (ABI >= 6); and, where unprivileged user namespaces exist, a PID namespace with its
own ``/proc`` (no view of any other process, the parent's included) and an empty network
namespace (no interface but a down loopback), entered by ``unshare`` when the worker starts.

Why by hand: the one Python binding of Landlock on PyPI (``landlock`` 1.0.0.dev5, alpha) covers
filesystem rules only, not the network rules and scopes this needs; the kernel interface is
three system calls and two structures.

A confined worker may read the Python installation (``sys.prefix`` and the import path), the
system libraries and the submission's own folder (its weights), write its empty temporary folder
only, and connect or bind no TCP port; what it is denied fails with ``PermissionError`` (or, in
the empty network namespace, "network is unreachable"), which the worker reports as the one line
of a failed submission.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import sys
from pathlib import Path

__all__ = ["landlock_abi", "confine", "namespace_prefix", "SandboxUnavailable", "MODES",
           "default_read_only", "default_read_write", "describe", "is_confined"]

#: --sandbox: required (refuse to run unconfined), auto (confine what the kernel allows, say
#: what it does not), off
MODES = ("required", "auto", "off")

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# filesystem rights by the ABI that introduced them
_FS_RIGHTS = [
    (1, {"execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3,
         "remove_dir": 1 << 4, "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7,
         "make_reg": 1 << 8, "make_sock": 1 << 9, "make_fifo": 1 << 10, "make_block": 1 << 11,
         "make_sym": 1 << 12}),
    (2, {"refer": 1 << 13}),
    (3, {"truncate": 1 << 14}),
    (5, {"ioctl_dev": 1 << 15}),
]
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_READ = ("execute", "read_file", "read_dir")


class SandboxUnavailable(RuntimeError):
    """The kernel offers no Landlock here (another OS, an old kernel, a disabled LSM)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none."""
    if platform.system() != "Linux" or platform.machine() not in _SYSCALLS:
        return 0
    create = _SYSCALLS[platform.machine()][0]
    v = _libc().syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(v), 0)


def _fs_rights(abi: int) -> dict[str, int]:
    return {k: v for since, rights in _FS_RIGHTS if abi >= since for k, v in rights.items()}


def default_read_only(source_dir: Path | None) -> list[Path]:
    """What a worker reads: the Python installation and its import path (not the current
    folder), the system's libraries and configuration, ``/sys`` (devices: what CUDA's driver
    reads; no data), the CPU description, its own ``/proc`` entries, the devices every program
    opens, and the submission's own folder."""
    here = Path.cwd().resolve()
    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p}
    paths |= {Path(p) for p in sys.path if p and Path(p).resolve() != here}
    paths |= {Path(p) for p in ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc",
                                "/opt", "/sys", "/proc/driver/nvidia",
                                "/proc/self", "/proc/thread-self", "/proc/cpuinfo",
                                "/proc/meminfo", "/proc/stat", "/dev/null", "/dev/zero",
                                "/dev/urandom", "/dev/random")}
    if source_dir is not None:
        paths.add(Path(source_dir))
    return sorted(p for p in paths if p.exists())


def default_read_write(work: Path) -> list[Path]:
    """What a worker writes: its temporary folder and the CUDA devices where there are some
    (opened read-write, with ioctls). Not /dev/shm: what is written there outlives the run."""
    paths = [Path(work), *Path("/dev").glob("nvidia*"), Path("/dev/dri")]
    return [p for p in paths if p.exists()]


def confine(read_only: list[Path], read_write: list[Path]) -> dict:
    """Restrict this process (and what it starts) to reading ``read_only``, reading and writing
    ``read_write``, no TCP connect or bind, no signals or abstract sockets outside; returns what
    holds it, for the result. Raises :class:`SandboxUnavailable` without Landlock."""
    abi = landlock_abi()
    if abi < 1:
        raise SandboxUnavailable("the kernel offers no Landlock (Linux >= 5.13 with the LSM on)")
    libc = _libc()
    create, add_rule, restrict = _SYSCALLS[platform.machine()]
    rights = _fs_rights(abi)
    every = sum(rights.values())
    attr = _RulesetAttr(every, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise SandboxUnavailable(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        read = sum(rights[k] for k in _READ)
        for paths, allowed in ((read_only, read), (read_write, every)):
            for p in paths:
                _allow(libc, add_rule, fd, Path(p), allowed, rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxUnavailable(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(restrict, fd, ctypes.c_uint32(0)) != 0:
            raise SandboxUnavailable(f"landlock_restrict_self: "
                                     f"{os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    return {"landlock_abi": abi, "filesystem": "landlock",
            "network": "landlock (no TCP connect or bind)" if abi >= 4 else None,
            "scoped": "signals, abstract unix sockets" if abi >= 6 else None}


def _allow(libc, add_rule, fd: int, path: Path, allowed: int, rights: dict) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone since it was listed: nothing to allow
    try:
        if not path.is_dir():  # a file takes file rights only
            allowed &= sum(rights[k] for k in ("execute", "write_file", "read_file", "truncate",
                                               "ioctl_dev") if k in rights)
        rule = _PathBeneathAttr(allowed, pfd)
        if libc.syscall(add_rule, fd, _RULE_PATH_BENEATH, ctypes.byref(rule),
                        ctypes.c_uint32(0)) != 0:
            raise SandboxUnavailable(f"landlock_add_rule {path}: "
                                     f"{os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pfd)


def describe(record: dict | None) -> str:
    """One line: what held a run (``run.sandbox`` of a result)."""
    if not record or record.get("mode") == "off":
        return "unconfined (--sandbox off)" if record else "unconfined (scored before sandboxing)"
    if not record.get("filesystem"):
        return f"unconfined: {record.get('reason', 'no Landlock')}"
    parts = [f"Landlock ABI {record['landlock_abi']}"]
    if record.get("namespaces"):
        parts.append("PID and network namespaces")
    return "confined: " + ", ".join(parts)


def is_confined(record: dict | None) -> bool:
    """Whether a run's files and network were confined (Landlock held it)."""
    return bool(record and record.get("mode") != "off" and record.get("filesystem")
                and (record.get("network") or record.get("namespaces")))


@functools.cache
def namespace_prefix() -> tuple[str, ...]:
    """The command that starts the worker in new user, PID (with its own /proc) and network
    namespaces, or () where they are not available; checked once by running ``true`` in them."""
    import subprocess

    exe = shutil.which("unshare")
    if exe is None or platform.system() != "Linux":
        return ()
    cmd = [exe, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--net", "--"]
    try:
        ok = subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return tuple(cmd) if ok else ()

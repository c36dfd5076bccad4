"""Where a process belongs: its systemd unit, user, slice or container, from its cgroup.

Pure parsing of /proc/PID/cgroup text (both the unified v2 line and the named v1
`name=systemd` hierarchy of hybrid hosts). No D-Bus, no systemctl: the cgroup path is
what systemd itself uses to place processes.
"""

from __future__ import annotations

import functools
import re

import attrs

_CONTAINER = (
    re.compile(r"^docker-([0-9a-f]{12,64})\.scope$"),
    re.compile(r"^libpod-([0-9a-f]{12,64})\.scope$"),
    re.compile(r"^cri-containerd-([0-9a-f]{12,64})\.scope$"),
    re.compile(r"^crio-([0-9a-f]{12,64})\.scope$"),
    re.compile(r"^([0-9a-f]{64})$"),  # /docker/<id>, /kubepods/.../<id>
)
_USER_MANAGER = re.compile(r"^user@(\d+)\.service$")
_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")


@attrs.frozen
class Placement:
    """The unit (or container) a process runs in, as its cgroup says."""

    cgroup: str
    unit: str | None = None  # "nginx.service", or a user unit / scope
    user: int | None = None  # set for units of a user's service manager
    container: str | None = None  # container id when the cgroup names one


def cgroup_path(data: bytes) -> str:
    """The process's systemd cgroup path: the v2 line, or `name=systemd` on hybrid hosts."""
    v2 = named = None
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            v2 = path
        elif controllers == "name=systemd":
            named = path
    if v2 not in (None, "/"):
        return str(v2)
    return named or v2 or "/"


@functools.lru_cache(maxsize=4096)  # a host's processes share a few cgroups; records are frozen
def place(data: bytes) -> Placement:
    """Placement of a process from the bytes of /proc/PID/cgroup."""
    path = cgroup_path(data)
    parts = [p for p in path.split("/") if p]
    unit = container = None
    user = None
    for part in parts:
        m = _USER_MANAGER.match(part)
        if m:
            user = int(m.group(1))
            unit = part  # the manager itself, unless one of its units is found below
            continue
        for pattern in _CONTAINER:
            hit = pattern.match(part)
            if hit:
                container = hit.group(1)
        # the outermost unit wins (a delegated service may make sub-cgroups of its own),
        # except that a user manager's units replace the manager
        if part.endswith(_UNIT_SUFFIXES) and (unit is None or _USER_MANAGER.match(unit)):
            unit = part
    return Placement(path, unit, user, container)

"""CPU, memory, disk and GPU readings that respect container (cgroup v1/v2) limits.

All functions are synchronous and cheap except `gpus()` (may spawn nvidia-smi) and the very
first `cpu_percent()` of a cgroup root (primes over a short interval); call them from a thread
in async code. Every reader takes `cgroup_root` so tests can point it at a fake tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a page-rounded LONG_MAX; anything near it means unlimited.
_UNLIMITED = 1 << 60
_PROCESS_START = psutil.Process().create_time()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _stat_value(path: Path, name: str) -> int | None:
    """A `key value` line from cpu.stat / memory.stat."""
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def cgroup_version(cgroup_root: Path = DEFAULT_CGROUP_ROOT) -> int | None:
    root = Path(cgroup_root)
    if (root / "cgroup.controllers").exists():
        return 2
    if any((root / d).is_dir() for d in ("memory", "cpuacct", "cpu,cpuacct", "cpu")):
        return 1
    return None


def _v1_dir(root: Path, *names: str) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _cpu_usage_ns(root: Path) -> int | None:
    """Cumulative CPU time of the cgroup in nanoseconds."""
    version = cgroup_version(root)
    if version == 2:
        usec = _stat_value(root / "cpu.stat", "usage_usec")
        return usec * 1000 if usec is not None else None
    if version == 1:
        acct = _v1_dir(root, "cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu")
        return _read_int(acct / "cpuacct.usage") if acct else None
    return None


def _parse_cpuset(text: str | None) -> int | None:
    if not text:
        return None
    count = 0
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit():
            return None
        count += (int(hi) - int(lo) + 1) if hi else 1
    return count or None


def available_cpus(cgroup_root: Path = DEFAULT_CGROUP_ROOT) -> float:
    """CPUs this process may use: the tightest of quota, cpuset, affinity and the host count."""
    root = Path(cgroup_root)
    limits: list[float] = []
    version = cgroup_version(root)
    if version == 2:
        quota, _, period = (_read(root / "cpu.max") or "max").partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            limits.append(int(quota) / int(period))
        cpuset = _parse_cpuset(_read(root / "cpuset.cpus.effective"))
    elif version == 1:
        cpu = _v1_dir(root, "cpu", "cpu,cpuacct", "cpuacct,cpu")
        quota_us = _read_int(cpu / "cpu.cfs_quota_us") if cpu else None
        period_us = _read_int(cpu / "cpu.cfs_period_us") if cpu else None
        if quota_us and quota_us > 0 and period_us and period_us > 0:
            limits.append(quota_us / period_us)
        cs = _v1_dir(root, "cpuset")
        cpuset_text = (_read(cs / "cpuset.effective_cpus") or _read(cs / "cpuset.cpus")) if cs else None
        cpuset = _parse_cpuset(cpuset_text)
    else:
        cpuset = None
    if cpuset:
        limits.append(float(cpuset))
    if not limits:  # host figures only when the cgroup says nothing
        try:
            limits.append(float(len(os.sched_getaffinity(0))))
        except (AttributeError, OSError):
            limits.append(float(os.cpu_count() or 1))
    return max(min(limits), 0.01)


class CpuSampler:
    """CPU use between successive calls, from cgroup accounting when available, else psutil.

    The reading is divided by the CPUs available to the cgroup, so a container limited to 2 CPUs
    that burns both reads 100, not 200 (the reference reported the unscaled figure).
    """

    MIN_INTERVAL = 0.05

    def __init__(
        self,
        cgroup_root: Path = DEFAULT_CGROUP_ROOT,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root = Path(cgroup_root)
        self.clock, self.sleep = clock, sleep
        self._last: tuple[float, int] | None = None
        self._value = 0.0
        self._psutil_primed = False
        self._lock = threading.Lock()

    def percent(self, prime_interval: float = 0.1) -> float:
        with self._lock:
            usage = _cpu_usage_ns(self.root)
            if usage is None:
                return self._psutil(prime_interval)
            now = self.clock()
            if self._last is None:
                # No earlier sample: measure over a short window rather than answer 0.
                self._last = (now, usage)
                self.sleep(prime_interval)
                usage, now = _cpu_usage_ns(self.root) or usage, self.clock()
            last_time, last_usage = self._last
            elapsed = now - last_time
            if elapsed < self.MIN_INTERVAL:
                return self._value  # too short a window to mean anything
            used = max(0, usage - last_usage) / 1e9
            self._value = round(min(100.0, 100.0 * used / elapsed / available_cpus(self.root)), 1)
            self._last = (now, usage)
            return self._value

    def _psutil(self, prime_interval: float) -> float:
        if not self._psutil_primed:
            self._psutil_primed = True
            return float(psutil.cpu_percent(interval=prime_interval))
        return float(psutil.cpu_percent(interval=None))


_samplers: dict[Path, CpuSampler] = {}
_samplers_lock = threading.Lock()


def cpu_percent(cgroup_root: Path = DEFAULT_CGROUP_ROOT) -> float:
    """0..100 of the CPUs available to this container/host, since the previous call."""
    with _samplers_lock:
        sampler = _samplers.setdefault(Path(cgroup_root), CpuSampler(Path(cgroup_root)))
    return sampler.percent()


def _cgroup_memory(root: Path) -> tuple[int, int | None] | None:
    """(used, limit) in bytes; used excludes reclaimable inactive page cache, as `docker stats`."""
    version = cgroup_version(root)
    if version == 2:
        current = _read_int(root / "memory.current")
        if current is None:
            return None  # the host's root cgroup has no memory.current
        raw_limit = _read(root / "memory.max")
        limit = int(raw_limit) if raw_limit and raw_limit.isdigit() else None
        inactive = _stat_value(root / "memory.stat", "inactive_file") or 0
    elif version == 1:
        mem = _v1_dir(root, "memory")
        current = _read_int(mem / "memory.usage_in_bytes") if mem else None
        if current is None:
            return None
        limit = _read_int(mem / "memory.limit_in_bytes")
        inactive = _stat_value(mem / "memory.stat", "total_inactive_file") or 0
    else:
        return None
    if limit is not None and limit >= _UNLIMITED:
        limit = None
    return max(0, current - inactive), limit


def memory(cgroup_root: Path = DEFAULT_CGROUP_ROOT) -> dict[str, Any]:
    host = psutil.virtual_memory()
    reading = _cgroup_memory(Path(cgroup_root))
    if reading is None:
        used, total = host.total - host.available, host.total
    else:
        used, limit = reading
        # A limit above physical memory ("max", LONG_MAX, or just generous) cannot be reached.
        total = limit if limit is not None and limit < host.total else host.total
    percent = round(100.0 * used / total, 1) if total else 0.0
    return {"used_bytes": used, "total_bytes": total, "percent": percent}


def disk_usage(path: Path | str) -> dict[str, Any]:
    target = Path(path).absolute()
    while not target.exists() and target != target.parent:
        target = target.parent  # e.g. KILN_HOME not created yet: report its filesystem
    du = shutil.disk_usage(target)
    return {
        "path": str(Path(path)),
        "used_bytes": du.used,
        "free_bytes": du.free,
        "total_bytes": du.total,
        "percent": round(100.0 * du.used / du.total, 1) if du.total else 0.0,
    }


_SMI_FIELDS = ("index", "name", "uuid", "utilization.gpu", "memory.used", "memory.total", "temperature.gpu")


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def _from_nvidia_smi(exe: str) -> list[dict[str, Any]] | None:
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != len(_SMI_FIELDS):
            continue
        index, name, uuid, util, used, total, temp = cols
        mem_used, mem_total = _num(used), _num(total)
        gpus.append(
            {
                "index": int(index) if index.isdigit() else len(gpus),
                "name": name,
                "uuid": uuid,
                "utilization_percent": _num(util),
                # nvidia-smi reports MiB
                "memory_used_bytes": int(mem_used * 1024 * 1024) if mem_used is not None else None,
                "memory_total_bytes": int(mem_total * 1024 * 1024) if mem_total is not None else None,
                "temperature_c": _num(temp),
            }
        )
    return gpus


def _from_proc(proc_root: Path) -> list[dict[str, Any]]:
    gpus = []
    for i, info in enumerate(sorted((proc_root / "driver" / "nvidia" / "gpus").glob("*/information"))):
        fields = {}
        for line in (_read(info) or "").splitlines():
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        gpus.append(
            {
                "index": i,
                "name": fields.get("model", "NVIDIA GPU"),
                "uuid": fields.get("gpu uuid"),
                "bus": info.parent.name,
                "utilization_percent": None,
                "memory_used_bytes": None,
                "memory_total_bytes": None,
                "temperature_c": None,
            }
        )
    return gpus


def gpus(*, nvidia_smi: str | None = None, proc_root: Path = Path("/proc")) -> list[dict[str, Any]]:
    """NVIDIA GPUs: live figures from nvidia-smi, else names from the driver's /proc, else []."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if exe:
        found = _from_nvidia_smi(exe)
        if found is not None:
            return found
    return _from_proc(Path(proc_root))


def _cgroup_limited(root: Path) -> bool:
    reading = _cgroup_memory(root)
    if reading is not None and reading[1] is not None:
        return True
    host_cpus = os.cpu_count() or 1
    return available_cpus(root) < host_cpus


def environment(cgroup_root: Path = DEFAULT_CGROUP_ROOT, *, root_fs: Path = Path("/")) -> str:
    fs = Path(root_fs)
    if (fs / ".dockerenv").exists() or (fs / "run" / ".containerenv").exists():
        return "container"
    # `container` (lower case) is what systemd-nspawn and podman set.
    if os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("container"):  # noqa: SIM112
        return "container"
    init_cgroup = _read(fs / "proc" / "1" / "cgroup") or ""
    if any(marker in init_cgroup for marker in ("docker", "kubepods", "containerd", "libpod", "lxc")):
        return "container"
    return "container" if _cgroup_limited(Path(cgroup_root)) else "host"


def uptime_seconds() -> float:
    """Seconds since this Kiln process started."""
    return round(time.time() - _PROCESS_START, 1)


def snapshot(
    path: Path | str = ".",
    *,
    cgroup_root: Path = DEFAULT_CGROUP_ROOT,
    root_fs: Path = Path("/"),
) -> dict[str, Any]:
    root = Path(cgroup_root)
    return {
        "cpu_percent": cpu_percent(root),
        "cpu_count": available_cpus(root),
        "memory": memory(root),
        "disk": disk_usage(path),
        "gpus": gpus(proc_root=Path(root_fs) / "proc"),
        "environment": environment(root, root_fs=root_fs),
        "cgroup_version": cgroup_version(root),
        "uptime_seconds": uptime_seconds(),
    }

"""System readings against fake cgroup v1 / v2 trees written into a temp directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest

from kiln.core import system
from kiln.core.system import CpuSampler

GiB = 1024**3
HOST_TOTAL = psutil.virtual_memory().total


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def v2_tree(
    root: Path,
    *,
    usage_usec: int = 0,
    cpu_max: str = "max 100000",
    mem_current: int = 2 * GiB,
    mem_max: str = "max",
    inactive: int = 0,
    cpuset: str | None = None,
) -> Path:
    write(root, "cgroup.controllers", "cpuset cpu io memory pids")
    write(root, "cpu.stat", f"usage_usec {usage_usec}\nuser_usec {usage_usec // 2}\nsystem_usec 0")
    write(root, "cpu.max", cpu_max)
    write(root, "memory.current", str(mem_current))
    write(root, "memory.max", mem_max)
    write(root, "memory.stat", f"anon 1000\nfile 5000\ninactive_file {inactive}\nactive_file 7")
    if cpuset is not None:
        write(root, "cpuset.cpus.effective", cpuset)
    return root


def v1_tree(
    root: Path,
    *,
    usage_ns: int = 0,
    quota_us: int = -1,
    period_us: int = 100000,
    mem_usage: int = 2 * GiB,
    mem_limit: int = 9223372036854771712,
    inactive: int = 0,
) -> Path:
    # Real v1 mounts the combined "cpu,cpuacct" hierarchy; "cpu"/"cpuacct" are symlinks to it.
    write(root, "cpu,cpuacct/cpuacct.usage", str(usage_ns))
    write(root, "cpu,cpuacct/cpu.cfs_quota_us", str(quota_us))
    write(root, "cpu,cpuacct/cpu.cfs_period_us", str(period_us))
    (root / "cpu").symlink_to(root / "cpu,cpuacct")
    (root / "cpuacct").symlink_to(root / "cpu,cpuacct")
    write(root, "memory/memory.usage_in_bytes", str(mem_usage))
    write(root, "memory/memory.limit_in_bytes", str(mem_limit))
    write(root, "memory/memory.stat", f"cache 10\ntotal_inactive_file {inactive}\ntotal_rss 5")
    return root


class FakeTime:
    """A clock whose sleep advances time and lets the test change the cgroup files meanwhile."""

    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()


# --- CPU --------------------------------------------------------------------------------------


def test_cpu_v2_scaled_to_quota(tmp_path):
    root = v2_tree(tmp_path, usage_usec=10_000_000, cpu_max="200000 100000")  # 2 CPUs
    t = FakeTime()
    sampler = CpuSampler(root, clock=t.clock, sleep=t.sleep)
    sampler._last = (t.now, 10_000_000 * 1000)
    t.now += 2.0
    write(root, "cpu.stat", "usage_usec 12000000")  # 2 CPU-seconds in 2 s on 2 CPUs
    assert sampler.percent() == 50.0  # unscaled would read 100
    t.now += 1.0
    write(root, "cpu.stat", "usage_usec 14000000")  # both CPUs saturated
    assert sampler.percent() == 100.0


def test_cpu_v2_first_call_primes_over_interval(tmp_path):
    root = v2_tree(tmp_path, usage_usec=0, cpu_max="max 100000", cpuset="0-3")  # 4 CPUs by cpuset
    t = FakeTime(on_sleep=lambda: write(root, "cpu.stat", "usage_usec 100000"))  # 0.1 CPU-s
    sampler = CpuSampler(root, clock=t.clock, sleep=t.sleep)
    assert sampler.percent(prime_interval=0.1) == 25.0  # 1 CPU busy of 4


def test_cpu_v2_fractional_quota_and_clamp(tmp_path):
    root = v2_tree(tmp_path, usage_usec=0, cpu_max="50000 100000")  # half a CPU
    t = FakeTime()
    sampler = CpuSampler(root, clock=t.clock, sleep=t.sleep)
    sampler._last = (t.now, 0)
    t.now += 1.0
    write(root, "cpu.stat", "usage_usec 250000")
    assert sampler.percent() == 50.0
    t.now += 1.0
    write(root, "cpu.stat", "usage_usec 1250000")  # accounting jitter above the quota
    assert sampler.percent() == 100.0


def test_cpu_v1_scaled_to_cfs_quota(tmp_path):
    root = v1_tree(tmp_path, usage_ns=5 * 10**9, quota_us=400000, period_us=100000)  # 4 CPUs
    t = FakeTime()
    sampler = CpuSampler(root, clock=t.clock, sleep=t.sleep)
    sampler._last = (t.now, 5 * 10**9)
    t.now += 1.0
    write(root, "cpu,cpuacct/cpuacct.usage", str(6 * 10**9))  # 1 CPU-second in 1 s
    assert sampler.percent() == 25.0


def test_cpu_short_window_returns_previous_value(tmp_path):
    root = v2_tree(tmp_path, usage_usec=0, cpu_max="100000 100000")
    t = FakeTime()
    sampler = CpuSampler(root, clock=t.clock, sleep=t.sleep)
    sampler._last = (t.now, 0)
    t.now += 1.0
    write(root, "cpu.stat", "usage_usec 300000")
    assert sampler.percent() == 30.0
    t.now += 0.001
    write(root, "cpu.stat", "usage_usec 900000")
    assert sampler.percent() == 30.0


def test_cpu_without_cgroup_falls_back_to_psutil(tmp_path):
    value = system.cpu_percent(tmp_path / "no-cgroup-here")
    assert 0.0 <= value <= 100.0
    assert system.cgroup_version(tmp_path / "no-cgroup-here") is None


@pytest.mark.parametrize(("cpuset", "want"), [("0-3", 4.0), ("0,2,4-5", 4.0), ("7", 1.0)])
def test_available_cpus_from_cpuset(tmp_path, cpuset, want):
    assert system.available_cpus(v2_tree(tmp_path, cpuset=cpuset)) == want


def test_available_cpus_takes_tightest_limit(tmp_path):
    assert system.available_cpus(v2_tree(tmp_path, cpu_max="150000 100000", cpuset="0-3")) == 1.5


# --- memory -----------------------------------------------------------------------------------


def test_memory_v2_with_limit_excludes_inactive_cache(tmp_path):
    root = v2_tree(tmp_path, mem_current=3 * GiB, mem_max=str(4 * GiB), inactive=1 * GiB)
    if 4 * GiB >= HOST_TOTAL:
        pytest.skip("host has less memory than the fake limit")
    assert system.memory(root) == {"used_bytes": 2 * GiB, "total_bytes": 4 * GiB, "percent": 50.0}


def test_memory_v2_max_means_host_total(tmp_path):
    root = v2_tree(tmp_path, mem_current=GiB // 2, mem_max="max")
    got = system.memory(root)
    assert got["total_bytes"] == HOST_TOTAL and got["used_bytes"] == GiB // 2
    assert got["percent"] == round(100 * (GiB // 2) / HOST_TOTAL, 1)


def test_memory_v1_huge_limit_ignored_and_limit_used(tmp_path):
    unlimited = v1_tree(tmp_path / "a", mem_usage=GiB, inactive=GiB // 4)
    got = system.memory(unlimited)
    assert got["total_bytes"] == HOST_TOTAL and got["used_bytes"] == GiB - GiB // 4
    limited = v1_tree(tmp_path / "b", mem_usage=GiB, mem_limit=2 * GiB, inactive=0)
    if 2 * GiB >= HOST_TOTAL:
        pytest.skip("host has less memory than the fake limit")
    assert system.memory(limited) == {"used_bytes": GiB, "total_bytes": 2 * GiB, "percent": 50.0}


def test_memory_limit_above_host_memory_is_ignored(tmp_path):
    root = v2_tree(tmp_path, mem_current=GiB, mem_max=str(HOST_TOTAL * 4))
    assert system.memory(root)["total_bytes"] == HOST_TOTAL


def test_memory_v2_root_cgroup_falls_back_to_host(tmp_path):
    root = v2_tree(tmp_path)
    (root / "memory.current").unlink()  # the host's root cgroup has none
    got = system.memory(root)
    assert got["total_bytes"] == HOST_TOTAL
    assert 0 < got["used_bytes"] < HOST_TOTAL


# --- disk, GPUs, environment, snapshot -------------------------------------------------------


def test_disk_usage_of_missing_path_reports_its_filesystem(tmp_path):
    got = system.disk_usage(tmp_path / "not" / "yet")
    real = psutil.disk_usage(str(tmp_path))
    assert got["total_bytes"] == real.total
    assert got["path"] == str(tmp_path / "not" / "yet")
    assert 0 <= got["percent"] <= 100


def test_gpus_from_nvidia_smi(tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        "echo '0, NVIDIA A100-SXM4-40GB, GPU-aaa, 37, 1024, 40960, 41'\n"
        "echo '1, NVIDIA L4, GPU-bbb, [N/A], 0, 23034, [N/A]'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    got = system.gpus(nvidia_smi=str(script), proc_root=tmp_path / "proc")
    assert got[0] == {
        "index": 0,
        "name": "NVIDIA A100-SXM4-40GB",
        "uuid": "GPU-aaa",
        "utilization_percent": 37.0,
        "memory_used_bytes": 1024 * 1024 * 1024,
        "memory_total_bytes": 40960 * 1024 * 1024,
        "temperature_c": 41.0,
    }
    assert got[1]["name"] == "NVIDIA L4" and got[1]["utilization_percent"] is None
    assert got[1]["temperature_c"] is None


def test_gpus_from_proc_when_smi_fails(tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nexit 9\n")
    script.chmod(0o755)
    write(
        tmp_path,
        "proc/driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t NVIDIA GeForce RTX 4090\nIRQ:   140\nGPU UUID: \t GPU-ccc\nBus Type: PCIe",
    )
    got = system.gpus(nvidia_smi=str(script), proc_root=tmp_path / "proc")
    assert [(g["name"], g["uuid"], g["bus"]) for g in got] == [("NVIDIA GeForce RTX 4090", "GPU-ccc", "0000:01:00.0")]


def test_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert system.gpus(proc_root=tmp_path / "proc") == []


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("container", raising=False)


def test_environment_host_when_unlimited_and_no_markers(tmp_path, clean_env):
    fs = tmp_path / "fs"
    write(fs, "proc/1/cgroup", "0::/init.scope")
    root = v2_tree(tmp_path / "cg", cpuset=f"0-{(os.cpu_count() or 1) - 1}")
    assert system.environment(root, root_fs=fs) == "host"


def test_environment_container_by_cgroup_limit(tmp_path, clean_env):
    fs = tmp_path / "fs"
    fs.mkdir()
    assert system.environment(v2_tree(tmp_path / "a", mem_max=str(GiB)), root_fs=fs) == "container"
    assert system.environment(v1_tree(tmp_path / "b", quota_us=50000), root_fs=fs) == "container"


@pytest.mark.parametrize("marker", [".dockerenv", "run/.containerenv"])
def test_environment_container_by_marker_file(tmp_path, clean_env, marker):
    write(tmp_path / "fs", marker, "")
    assert system.environment(tmp_path / "no-cgroup", root_fs=tmp_path / "fs") == "container"


def test_environment_container_by_init_cgroup(tmp_path, clean_env):
    write(tmp_path / "fs", "proc/1/cgroup", "12:memory:/kubepods/burstable/pod1234/abc")
    assert system.environment(tmp_path / "no-cgroup", root_fs=tmp_path / "fs") == "container"


def test_snapshot_shape(tmp_path, clean_env):
    root = v2_tree(tmp_path / "cg", mem_current=GiB, mem_max=str(GiB * 2), cpu_max="100000 100000")
    snap = system.snapshot(tmp_path, cgroup_root=root, root_fs=tmp_path / "fs")
    assert set(snap) == {
        "cpu_percent",
        "cpu_count",
        "memory",
        "disk",
        "gpus",
        "environment",
        "cgroup_version",
        "uptime_seconds",
    }
    assert 0.0 <= snap["cpu_percent"] <= 100.0
    assert snap["cpu_count"] == 1.0 and snap["cgroup_version"] == 2
    assert snap["environment"] == "container"
    assert snap["memory"]["used_bytes"] == GiB
    assert 0 <= snap["uptime_seconds"] <= system.uptime_seconds()
    assert isinstance(snap["gpus"], list)

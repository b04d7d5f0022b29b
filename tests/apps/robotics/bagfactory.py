"""Write real ROS recordings for tests and benchmarks (rosbags writers, mcap writer).

Every message value is a pure function of its topic and index, so tests can compute
what a conversion must produce: see `imu_value`, `odom_x`, `image_fill`, `status_text`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_typestore

START_NS = 1_700_000_000_000_000_000

IMAGE = "sensor_msgs/msg/Image"
IMU = "sensor_msgs/msg/Imu"
CLOUD = "sensor_msgs/msg/PointCloud2"
ODOM = "nav_msgs/msg/Odometry"
STRING = "std_msgs/msg/String"

FORMATS = (
    "bag",
    "bag-bz2",
    "bag-lz4",
    "mcap",
    "mcap-lz4",
    "mcap-zstd",
    "db3",
    "dir-mcap",
    "dir-db3",
)


@dataclass
class TopicPlan:
    topic: str
    msgtype: str
    rate_hz: float
    offset_ns: int = 0  # first message time relative to START_NS


@dataclass
class RecordingPlan:
    duration_s: float = 2.0
    image_size: tuple[int, int] = (8, 6)  # width, height
    cloud_points: int = 16
    topics: list[TopicPlan] = field(
        default_factory=lambda: [
            TopicPlan("/camera/image_raw", IMAGE, 10.0),
            TopicPlan("/imu", IMU, 100.0, offset_ns=1_000_000),
            TopicPlan("/odom", ODOM, 50.0, offset_ns=2_000_000),
            TopicPlan("/lidar/points", CLOUD, 5.0, offset_ns=3_000_000),
            TopicPlan("/status", STRING, 1.0, offset_ns=4_000_000),
        ]
    )

    def count(self, topic: str) -> int:
        plan = next(p for p in self.topics if p.topic == topic)
        return len(list(_times(plan, self.duration_s)))


def imu_value(i: int) -> float:
    return 0.5 * i


def odom_x(i: int) -> float:
    return 0.25 * i


def image_fill(i: int) -> int:
    return i % 256


def status_text(i: int) -> str:
    return f"status {i}"


def _times(plan: TopicPlan, duration_s: float) -> Iterator[int]:
    period = int(round(1e9 / plan.rate_hz))
    n = int(duration_s * plan.rate_hz)
    for i in range(n):
        yield START_NS + plan.offset_ns + i * period


def _header(ts, ros1: bool, t_ns: int, frame: str):
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
    hdr = ts.types["std_msgs/msg/Header"]
    return hdr(seq=0, stamp=stamp, frame_id=frame) if ros1 else hdr(stamp=stamp, frame_id=frame)


def make_message(ts, ros1: bool, msgtype: str, i: int, t_ns: int, plan: RecordingPlan):
    T = ts.types
    if msgtype == STRING:
        return T[STRING](data=status_text(i))
    header = _header(ts, ros1, t_ns, "base")
    vec = T["geometry_msgs/msg/Vector3"]
    quat = T["geometry_msgs/msg/Quaternion"]
    if msgtype == IMU:
        v = imu_value(i)
        return T[IMU](
            header=header,
            orientation=quat(x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.zeros(9),
            angular_velocity=vec(x=0.0, y=0.0, z=-v),
            angular_velocity_covariance=np.zeros(9),
            linear_acceleration=vec(x=v, y=1.0, z=9.81),
            linear_acceleration_covariance=np.zeros(9),
        )
    if msgtype == IMAGE:
        w, h = plan.image_size
        data = np.full(w * h * 3, image_fill(i), dtype=np.uint8)
        return T[IMAGE](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=data)
    if msgtype == ODOM:
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=odom_x(i), y=0.0, z=0.0),
            orientation=quat(x=0.0, y=0.0, z=0.0, w=1.0),
        )
        twist = T["geometry_msgs/msg/Twist"](linear=vec(x=1.0, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=0.1))
        return T[ODOM](
            header=header,
            child_frame_id="base_link",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
        )
    if msgtype == CLOUD:
        n = plan.cloud_points
        field_t = T["sensor_msgs/msg/PointField"]
        fields = [field_t(name=c, offset=4 * k, datatype=7, count=1) for k, c in enumerate("xyz")]
        pts = np.full((n, 3), float(i), dtype=np.float32)
        return T[CLOUD](
            header=header,
            height=1,
            width=n,
            fields=fields,
            is_bigendian=False,
            point_step=12,
            row_step=12 * n,
            data=pts.view(np.uint8).reshape(-1),
            is_dense=True,
        )
    raise ValueError(f"no generator for {msgtype}")


def _events(plan: RecordingPlan) -> Iterator[tuple[int, int, TopicPlan]]:
    """(time, index, topic plan) in time order, like a recorder would write them."""

    def stream(k: int, p: TopicPlan) -> Iterator[tuple[int, int, int]]:
        for i, t in enumerate(_times(p, plan.duration_s)):
            yield t, i, k

    streams = [stream(k, p) for k, p in enumerate(plan.topics)]
    for t, i, k in heapq.merge(*streams):
        yield t, i, plan.topics[k]


def write_recording(path: Path, fmt: str = "bag", plan: RecordingPlan | None = None) -> Path:
    """Write a recording in `fmt` (one of FORMATS) and return the path to open.

    `dir-*` return the rosbag2 directory, `db3` the .db3 file inside one, `mcap*` a
    standalone MCAP file with chunks compressed as named.
    """
    plan = plan or RecordingPlan()
    path = Path(path)
    if fmt.startswith("bag"):
        return _write_ros1(path, fmt, plan)
    if fmt.startswith("mcap"):
        return _write_mcap(path, fmt.partition("-")[2] or "none", plan)
    if fmt in ("db3", "dir-db3", "dir-mcap"):
        storage = StoragePlugin.MCAP if fmt == "dir-mcap" else StoragePlugin.SQLITE3
        directory = path.with_suffix("") if path.suffix else path
        _write_ros2_dir(directory, storage, plan)
        if fmt == "db3":
            return directory / f"{directory.name}.db3"
        return directory
    raise ValueError(f"unknown fixture format {fmt!r}")


def _write_ros1(path: Path, fmt: str, plan: RecordingPlan) -> Path:
    ts = get_typestore(Stores.ROS1_NOETIC)
    writer = Ros1Writer(path)
    if fmt == "bag-bz2":
        writer.set_compression(Ros1Writer.CompressionFormat.BZ2)
    elif fmt == "bag-lz4":
        writer.set_compression(Ros1Writer.CompressionFormat.LZ4)
    with writer:
        conns = {p.topic: writer.add_connection(p.topic, p.msgtype, typestore=ts) for p in plan.topics}
        for t, i, p in _events(plan):
            msg = make_message(ts, True, p.msgtype, i, t, plan)
            writer.write(conns[p.topic], t, ts.serialize_ros1(msg, p.msgtype))
    return path


def _write_ros2_dir(directory: Path, storage: StoragePlugin, plan: RecordingPlan) -> None:
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Ros2Writer(directory, version=9, storage_plugin=storage) as writer:
        conns = {p.topic: writer.add_connection(p.topic, p.msgtype, typestore=ts) for p in plan.topics}
        for t, i, p in _events(plan):
            msg = make_message(ts, False, p.msgtype, i, t, plan)
            writer.write(conns[p.topic], t, ts.serialize_cdr(msg, p.msgtype))


def _write_mcap(path: Path, compression: str, plan: RecordingPlan) -> Path:
    from mcap.writer import CompressionType, Writer

    ts = get_typestore(Stores.ROS2_HUMBLE)
    kind = {"none": CompressionType.NONE, "lz4": CompressionType.LZ4, "zstd": CompressionType.ZSTD}[compression]
    with open(path, "wb") as fh:
        writer = Writer(fh, compression=kind, chunk_size=4 * 1024 * 1024)
        writer.start(profile="ros2", library="kiln-tests")
        channels: dict[str, int] = {}
        schemas: dict[str, int] = {}
        for p in plan.topics:
            if p.msgtype not in schemas:
                text = ts.generate_msgdef(p.msgtype, ros_version=2)[0]
                schemas[p.msgtype] = writer.register_schema(p.msgtype, "ros2msg", text.encode())
            channels[p.topic] = writer.register_channel(p.topic, "cdr", schemas[p.msgtype])
        for seq, (t, i, p) in enumerate(_events(plan)):
            data = ts.serialize_cdr(make_message(ts, False, p.msgtype, i, t, plan), p.msgtype)
            writer.add_message(channels[p.topic], log_time=t, data=bytes(data), publish_time=t, sequence=seq)
        writer.finish()
    return path

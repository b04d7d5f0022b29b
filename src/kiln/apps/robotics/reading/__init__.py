"""Reading ROS1/ROS2 recordings of every layout: the reader, the direct MCAP chunk reader, and
the size and ratio bounds every read is held to."""

"""Running a pipeline: the execute and stage routes, the `arted.run` job and its four stages
(safety, interception, translation with pre-output safety, ComfyUI media), and the live recorder."""

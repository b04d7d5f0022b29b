"""A BERT sentence encoder as an ONNX graph, built in memory from a `model.safetensors` file.

The sentence-transformers packages ship PyTorch weights only. Rather than carry a torch stack,
this module reads the safetensors file directly (its 8-byte header length, a JSON header,
then raw little-endian tensors) and writes the standard BERT encoder + mean pooling + L2
normalisation as ONNX operators, so onnxruntime runs it. The graph is built once per process
(about a second for MiniLM-L6) and never written anywhere; the output matches
sentence-transformers' own to float rounding (tested).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "F64": np.float64}
MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a float32/int64 numpy array (memory-mapped)."""
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if not 0 < header_len < MAX_HEADER_BYTES:
            raise ValueError("not a safetensors file")
        header = json.loads(handle.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise ValueError(f"unsupported tensor dtype {info['dtype']}")
            array = np.frombuffer(raw, dtype=dtype)
        array = array.reshape(info["shape"])
        tensors[name] = array.astype(np.float32) if array.dtype in (np.float16, np.float64) else array
    return tensors


class _Graph:
    """A tiny helper accumulating nodes and initializers with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        self._count += 1
        out = f"{kind.lower()}_{self._count}"
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        w = self.const(f"{prefix}.wt", weights[f"{prefix}.weight"].T.astype(np.float32))
        b = self.const(f"{prefix}.b", weights[f"{prefix}.bias"].astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        scale = self.const(f"{prefix}.w", weights[f"{prefix}.weight"].astype(np.float32))
        bias = self.const(f"{prefix}.b", weights[f"{prefix}.bias"].astype(np.float32))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def build_bert_encoder(model_dir: Path) -> bytes:
    """The serialized ONNX model: inputs `input_ids`, `attention_mask` ([batch, seq] int64),
    output `sentence_embedding` ([batch, hidden] float32, mean-pooled, L2-normalised)."""
    import onnx

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(f"unsupported model type {config.get('model_type')!r}")
    weights = read_safetensors(model_dir / "model.safetensors")
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    if prefix:
        weights = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph()
    h = g.helper

    ids, mask = "input_ids", "attention_mask"
    # Embeddings: word + position[0:seq] + token_type[0] (single-segment inputs only).
    word = g.op("Gather", [g.const("emb.word", weights["embeddings.word_embeddings.weight"]), ids])
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const("one_idx", np.array([1], dtype=np.int64))])
    positions = g.op(
        "Slice",
        [
            g.const("emb.pos", weights["embeddings.position_embeddings.weight"]),
            g.const("zero_i", np.array([0], dtype=np.int64)),
            seq_len,
            g.const("axis0", np.array([0], dtype=np.int64)),
        ],
    )
    token_type = g.const("emb.type0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", [g.op("Add", [word, positions]), token_type])
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", eps)

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, a large negative elsewhere.
    mask_f = g.op("Cast", [mask], to=onnx.TensorProto.FLOAT)
    one = g.const("one_f", np.array(1.0, dtype=np.float32))
    neg = g.op("Mul", [g.op("Sub", [one, mask_f]), g.const("neg_big", np.array(-1e9, dtype=np.float32))])
    ext_mask = g.op("Unsqueeze", [neg, g.const("axes12", np.array([1, 2], dtype=np.int64))])
    split_shape = g.const("split_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_shape = g.const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("attn_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}"
        q = g.op(
            "Transpose",
            [g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.query"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        k = g.op(
            "Transpose",
            [g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.key"), split_shape])],
            perm=[0, 2, 3, 1],
        )
        v = g.op(
            "Transpose",
            [g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.value"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), ext_mask])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        attn = g.linear(context, weights, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attn, x]), weights, f"{p}.attention.output.LayerNorm", eps)
        inter = g.linear(x, weights, f"{p}.intermediate.dense")
        gelu = g.op("Mul", [g.op("Mul", [inter, half]), g.op("Add", [one, g.op("Erf", [g.op("Div", [inter, sqrt2])])])])
        out = g.linear(gelu, weights, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), weights, f"{p}.output.LayerNorm", eps)

    # Mean pooling over attended tokens, then L2 normalisation.
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axis2", np.array([2], dtype=np.int64))])
    axis1 = g.const("axis1", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axis1], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [mask3, axis1], keepdims=0), g.const("tiny", np.array(1e-9, np.float32))])
    pooled = g.op("Div", [summed, counts])
    axis_last = g.const("axis_last", np.array([-1], dtype=np.int64))
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [pooled, pooled]), axis_last], keepdims=1)])
    norm = g.op("Max", [norm, g.const("eps_norm", np.array(1e-12, np.float32))])
    g.nodes.append(h.make_node("Div", [pooled, norm], ["sentence_embedding"]))

    graph = h.make_graph(
        g.nodes,
        "bert_sentence_encoder",
        [
            h.make_tensor_value_info(ids, onnx.TensorProto.INT64, ["batch", "seq"]),
            h.make_tensor_value_info(mask, onnx.TensorProto.INT64, ["batch", "seq"]),
        ],
        [h.make_tensor_value_info("sentence_embedding", onnx.TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="kiln")
    model.ir_version = 8
    return model.SerializeToString()

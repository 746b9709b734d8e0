"""Tiny ONNX models built with ``onnx.helper`` in every supported layout (and broken ones).

Outputs are constants (or the constant plus ``0 x`` the input, so the input is used), which
makes the expected decoding exact: a test knows every box and score the model will produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _tensor_type(array: np.ndarray) -> int:
    return {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}[array.dtype]


def constant_model(
    outputs: Mapping[str, np.ndarray],
    *,
    input_shape: Sequence[int | str] = (1, 3, 64, 64),
    inputs: int = 1,
    input_type: int = TensorProto.FLOAT,
    names: str | None = None,
) -> bytes:
    """A model whose outputs are ``outputs`` whatever the image (float outputs also carry
    ``0 * mean(input)``, so the graph reads its input)."""
    nodes = []
    graph_inputs = [
        helper.make_tensor_value_info("images" if k == 0 else f"extra{k}", input_type, list(input_shape))
        for k in range(inputs)
    ]
    nodes.append(helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["mean", "zero"], ["nothing"]))
    initializers = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        initializers.append(numpy_helper.from_array(value, f"{name}_value"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_value"], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, _tensor_type(value), list(value.shape)))
    graph = helper.make_graph(nodes, "tiny", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def yolov8_output(
    boxes: Sequence[tuple[float, float, float, float]],
    classes: Sequence[int],
    scores: Sequence[float],
    n_classes: int,
    anchors: int = 100,
) -> np.ndarray:
    """``1 x (4 + C) x N``: the given boxes (cx, cy, w, h in input pixels) first, the other
    anchors zero-scored."""
    out = np.zeros((1, 4 + n_classes, anchors), np.float32)
    out[0, :4, :] = np.array([32, 32, 4, 4], np.float32)[:, None]
    for k, (box, cls, score) in enumerate(zip(boxes, classes, scores, strict=True)):
        out[0, :4, k] = box
        out[0, 4 + cls, k] = score
    return out


def yolov5_output(
    boxes: Sequence[tuple[float, float, float, float]],
    classes: Sequence[int],
    objectness: Sequence[float],
    class_scores: Sequence[float],
    n_classes: int,
    anchors: int = 100,
) -> np.ndarray:
    out = np.zeros((1, anchors, 5 + n_classes), np.float32)
    out[0, :, :4] = np.array([32, 32, 4, 4], np.float32)
    for k, (box, cls, obj, score) in enumerate(zip(boxes, classes, objectness, class_scores, strict=True)):
        out[0, k, :4] = box
        out[0, k, 4] = obj
        out[0, k, 5 + cls] = score
    return out


def channel_mean_model(*, nhwc: bool = False, size: int = 32) -> bytes:
    """A "classifier" of 3 classes whose outputs are the mean of each input channel: checks
    the pre-processing (channel order, scale, mean/std, NCHW/NHWC) exactly."""
    shape = [1, size, size, 3] if nhwc else [1, 3, size, size]
    axes = [1, 2] if nhwc else [2, 3]
    nodes = [helper.make_node("ReduceMean", ["images"], ["scores"], keepdims=0, axes=axes)]
    graph = helper.make_graph(
        nodes,
        "means",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()

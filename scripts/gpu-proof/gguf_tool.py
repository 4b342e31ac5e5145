#!/usr/bin/env python3
"""A random-weight, Llama-shaped GGUF for the GPU proof, with the Python standard library only
(the GPU machine has no network; this machine has no numpy).

  gguf_tool.py vocab SRC.gguf VOCAB.gguf     keep SRC's tokenizer.* keys only (a vocab-only GGUF)
  gguf_tool.py model VOCAB.gguf OUT.gguf [--shape 1b|smollm2-135m|tiny] [--seed N]
  gguf_tool.py info FILE.gguf                the header and hyperparameters as one JSON line

The model is GGUF v3, architecture llama, matrices in Q8_0 (what llama.cpp's quantised
kernels run), norms in F32, the output head tied to the token embedding. Weights are random
int8 with a per-tensor scale of about 0.5/sqrt(fan-in), so activations stay finite through the
layers (RMS norms re-scale every block); the text is nonsense, the work per token is that of a
real model of this shape.
"""
import json
import os
import random
import struct
import sys

GGUF_MAGIC = b"GGUF"
ALIGN = 32
# GGUF value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types.
GGML_F32, GGML_Q8_0 = 0, 8
Q8_0_BLOCK, Q8_0_BYTES = 32, 34

SHAPES = {
    # Llama 3.2 1B's dimensions with SmolLM2's vocabulary.
    "1b": dict(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, ctx=8192, rope_base=500000.0),
    # SmolLM2-135M's dimensions.
    "smollm2-135m": dict(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, ctx=8192, rope_base=100000.0),
    # For tests: loads and generates in well under a second on a CPU.
    "tiny": dict(n_embd=64, n_layer=2, n_head=2, n_head_kv=1, n_ff=128, ctx=512, rope_base=10000.0),
}


class Reader:
    def __init__(self, path):
        self.f = open(path, "rb")

    def take(self, fmt):
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF")
        return struct.unpack(fmt, data)[0]

    def string(self):
        n = self.take("<Q")
        return self.f.read(n).decode("utf-8")

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def read_header(path):
    """(version, tensor count, [(key, type, value)]) of a GGUF file."""
    r = Reader(path)
    if r.f.read(4) != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file")
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kvs = []
    for _ in range(n_kv):
        key = r.string()
        t = r.take("<I")
        kvs.append((key, t, r.value(t)))
    r.f.close()
    return version, n_tensors, kvs


def enc_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def enc_value(t, v):
    if t == STR:
        return enc_str(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def enc_kv(key, t, v):
    return enc_str(key) + struct.pack("<I", t) + enc_value(t, v)


def write_gguf(path, kvs, tensors):
    """tensors: [(name, dims (innermost first), ggml type, nbytes, writer(file))]."""
    head = GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(enc_kv(k, t, v) for k, t, v in kvs)
    offset = 0
    infos = b""
    for name, dims, gtype, nbytes, _ in tensors:
        infos += enc_str(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", gtype, offset)
        offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head + infos)
        f.write(b"\0" * (-f.tell() % ALIGN))
        for _, _, _, nbytes, writer in tensors:
            start = f.tell()
            writer(f)
            assert f.tell() - start == nbytes
            f.write(b"\0" * (-f.tell() % ALIGN))
    os.replace(tmp, path)


def f16_bytes(x):
    return struct.pack("<e", x)


def q8_0(rows, cols, rng):
    """A Q8_0 matrix of `rows` rows of `cols` (fan-in) random values: per-block scale
    0.5/sqrt(cols)/74 (uniform int8 has a standard deviation of about 74)."""
    assert cols % Q8_0_BLOCK == 0, cols
    blocks = rows * cols // Q8_0_BLOCK
    scale = f16_bytes(0.5 / (cols ** 0.5) / 74.0)

    def writer(f):
        # A chunk of blocks at a time: random bytes, then every block's first two bytes set to
        # the scale (extended-slice assignment, so no Python loop per block).
        per_chunk = 1 << 16
        left = blocks
        while left:
            n = min(per_chunk, left)
            buf = bytearray(rng(n * Q8_0_BYTES))
            buf[0::Q8_0_BYTES] = scale[0:1] * n
            buf[1::Q8_0_BYTES] = scale[1:2] * n
            f.write(buf)
            left -= n

    return blocks * Q8_0_BYTES, writer


def ones_f32(n):
    return 4 * n, lambda f: f.write(struct.pack("<f", 1.0) * n)


def make_model(vocab_path, out, shape, seed):
    s = SHAPES[shape]
    _, _, vkvs = read_header(vocab_path)
    tok = [kv for kv in vkvs if kv[0].startswith("tokenizer.")]
    tokens = next((v for k, t, v in tok if k == "tokenizer.ggml.tokens"), None)
    if tokens is None:
        raise ValueError(f"{vocab_path}: no tokenizer.ggml.tokens")
    n_vocab = len(tokens[1])
    e, ff, hk = s["n_embd"], s["n_ff"], s["n_head_kv"]
    head_dim = e // s["n_head"]
    kv_dim = hk * head_dim
    gen = random.Random(seed)
    rng = gen.randbytes
    kvs = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, f"llmtop gpu-proof random {shape}"),
        ("general.file_type", U32, 7),  # mostly Q8_0
        ("llama.context_length", U32, s["ctx"]),
        ("llama.embedding_length", U32, e),
        ("llama.block_count", U32, s["n_layer"]),
        ("llama.feed_forward_length", U32, ff),
        ("llama.attention.head_count", U32, s["n_head"]),
        ("llama.attention.head_count_kv", U32, hk),
        ("llama.rope.dimension_count", U32, head_dim),
        ("llama.rope.freq_base", F32, s["rope_base"]),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.vocab_size", U32, n_vocab),
    ] + tok
    tensors = []

    def mat(name, fan_in, fan_out):
        nbytes, w = q8_0(fan_out, fan_in, rng)
        tensors.append((name, [fan_in, fan_out], GGML_Q8_0, nbytes, w))

    def vec(name, n):
        nbytes, w = ones_f32(n)
        tensors.append((name, [n], GGML_F32, nbytes, w))

    mat("token_embd.weight", e, n_vocab)
    vec("output_norm.weight", e)
    for i in range(s["n_layer"]):
        b = f"blk.{i}."
        vec(b + "attn_norm.weight", e)
        mat(b + "attn_q.weight", e, e)
        mat(b + "attn_k.weight", e, kv_dim)
        mat(b + "attn_v.weight", e, kv_dim)
        mat(b + "attn_output.weight", e, e)
        vec(b + "ffn_norm.weight", e)
        mat(b + "ffn_gate.weight", e, ff)
        mat(b + "ffn_up.weight", e, ff)
        mat(b + "ffn_down.weight", ff, e)
    write_gguf(out, kvs, tensors)


def info(path):
    version, n_tensors, kvs = read_header(path)
    out = {"version": version, "tensors": n_tensors}
    for k, t, v in kvs:
        if t == ARR:
            out[k] = {"array_len": len(v[1])}
        else:
            out[k] = v
    return out


def main(argv):
    if len(argv) >= 3 and argv[0] == "vocab":
        _, _, kvs = read_header(argv[1])
        keep = [kv for kv in kvs if kv[0].startswith("tokenizer.")]
        if not keep:
            sys.exit(f"gguf_tool: {argv[1]} has no tokenizer.* keys")
        write_gguf(argv[2], keep, [])
        return
    if len(argv) >= 3 and argv[0] == "model":
        shape, seed, rest = "1b", 1, argv[3:]
        while rest:
            if rest[0] == "--shape" and len(rest) > 1 and rest[1] in SHAPES:
                shape, rest = rest[1], rest[2:]
            elif rest[0] == "--seed" and len(rest) > 1 and rest[1].isdigit():
                seed, rest = int(rest[1]), rest[2:]
            else:
                sys.exit(f"gguf_tool: {rest[0]}: expected --shape {'|'.join(SHAPES)} or --seed N")
        make_model(argv[1], argv[2], shape, seed)
        return
    if len(argv) == 2 and argv[0] == "info":
        print(json.dumps(info(argv[1])))
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
"""A whole Mixtral-shaped decoder layer (attention + MoE block) in moec against transformers.

The model is the Python benchmark's (scripts/make_python_fixtures.py --bench: hidden 1024, ffn 3584,
8 experts, top-2, 8 query heads of 128 and 2 key/value heads); the layer is decoder layer 0. For each
token count, one sequence (a prefill without a KV cache):
  transformers  MixtralDecoderLayer (its default attention, sdpa, and experts implementation) called
                with its model's rotary tables and a causal mask, eval, no_grad, fp32
  moec          `moec bench graphs/decoder/mixtral.moe --model FOLDER --json` on the same folder
Before timing, moec's output on a 64-token input is checked against transformers' (max|Δ|/max|y|).
Both in one invocation, --threads threads each; medians of repeated runs (at least 10 and 1 s).

--decode C[,C...] also times decoding: one token after a context of C tokens, with a KV cache.
  transformers  the layer with a DynamicCache holding the context (cropped back to C after each step)
  moec          a `moec.Sequence` of the layer's plan holding the context (rewound to C after each step)
Each step takes the next of 16 random tokens (so that the experts read vary). Before timing, the
step's output is checked against transformers'.

    ~/.venvs/moec-ref/bin/python scripts/bench_decoder_layer.py --model /tmp/moec-bench-mixtral [--tokens 1,16,128,512]
        [--decode 16,512,2048]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import numpy as np  # noqa: E402
from bench_vs_torch import bench  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="/tmp/moec-bench-mixtral", help="the benchmark model's folder (built if missing)")
    ap.add_argument("--tokens", default="1,16,128,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--moec", default=os.path.join(REPO, ".build", "release", "moec"))
    ap.add_argument("--decode", default="", help="contexts to time one-token decode steps after, e.g. 16,512,2048")
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")] if a.tokens else []
    torch.set_num_threads(a.threads)
    if not os.path.exists(os.path.join(a.model, "config.json")):
        import make_python_fixtures
        make_python_fixtures.build("bench-mixtral", a.model)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    layer, rotary = model.model.layers[0], model.model.rotary_emb
    graph = os.path.join(REPO, "graphs", "decoder", "mixtral.moe")

    def torch_layer(x):
        t = x.shape[1]
        positions = torch.arange(t)[None]
        mask = torch.full((t, t), float("-inf")).triu(1)[None, None]
        out = layer(x, attention_mask=mask, position_ids=positions, position_embeddings=rotary(x, positions))
        return out[0] if isinstance(out, tuple) else out

    # The same function on both sides first.
    x = torch.randn(1, 64, model.config.hidden_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = torch_layer(x)[0].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x[0].numpy())
        subprocess.run([a.moec, "run", graph, "--model", a.model, "--input", f"x={tmp}/x.npy", "--output", f"y={tmp}/y.npy",
                        "--threads", str(a.threads)], check=True, capture_output=True)
        got = np.load(os.path.join(tmp, "y.npy"))
    err = float(np.abs(got - expected).max() / np.abs(expected).max())
    print(f"model {a.model}: hidden {model.config.hidden_size}, ffn {model.config.intermediate_size}, "
          f"{model.config.num_local_experts} experts, top-{model.config.num_experts_per_tok}, "
          f"{model.config.num_attention_heads} heads / {model.config.num_key_value_heads} kv heads of {model.config.head_dim}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {a.threads}; "
          f"moec vs transformers on 64 tokens: max|Δ|/max|y| = {err:.1e}")
    if not err <= 1e-4:
        sys.exit("moec and transformers disagree: not timing")

    if tokens:
        r = subprocess.run([a.moec, "bench", graph, "--model", a.model, "--tokens", ",".join(map(str, tokens)),
                            "--threads", str(a.threads), "--json"], check=True, capture_output=True, text=True)
        moec_runs = {j["tokens"]: j for j in map(json.loads, r.stdout.splitlines())}
        print(f"\n{'tokens':>6} {'transformers ms':>16} {'moec ms':>9} {'speed-up':>9} {'moec GFLOP/s':>13}")
        for t in tokens:
            xt = torch.randn(1, t, model.config.hidden_size, generator=torch.Generator().manual_seed(t))
            with torch.no_grad():
                ms = 1e3 * bench(lambda: torch_layer(xt))
            m = moec_runs[t]
            print(f"{t:>6} {ms:>16.2f} {m['median_ms']:>9.2f} {ms / m['median_ms']:>8.2f}× {m['gflops']:>13.1f}")
    if a.decode:
        decode(model, layer, rotary, graph, a, [int(c) for c in a.decode.split(",")])


def decode(model, layer, rotary, graph, a, contexts):
    """One-token decode steps after each context, with a KV cache on both sides."""
    import moec
    hidden = model.config.hidden_size
    plan = moec.compile(graph, model=a.model, threads=a.threads)
    steps = [torch.randn(1, 1, hidden, generator=torch.Generator().manual_seed(100 + i)) for i in range(16)]
    print(f"\ndecode: one token after the context, KV cache on both sides ({len(steps)} different tokens in turn)")
    print(f"{'context':>7} {'transformers ms':>16} {'moec ms':>9} {'speed-up':>9}  check max|Δ|/max|y|")
    for c in contexts:
        prompt = torch.randn(1, c, hidden, generator=torch.Generator().manual_seed(c))
        cache = transformers.DynamicCache(config=model.config)
        position = torch.tensor([[c]])
        step_rotary = rotary(steps[0], position)

        def torch_step(x):
            extra = cache.layers[0].get_seq_length() - c
            if extra > 0:
                cache.layers[0].crop(-extra)  # transformers 5: a negative count of tokens to remove
            out = layer(x, attention_mask=None, position_ids=position, past_key_values=cache, cache_position=position[0],
                        position_embeddings=step_rotary)
            return out[0] if isinstance(out, tuple) else out

        with torch.no_grad():
            positions = torch.arange(c)[None]
            mask = torch.full((c, c), float("-inf")).triu(1)[None, None]
            layer(prompt, attention_mask=mask, position_ids=positions, past_key_values=cache, cache_position=positions[0],
                  position_embeddings=rotary(prompt, positions))
            expected = torch_step(steps[0])[0].numpy()
        sequence = plan.sequence(c + 1)
        sequence(x=prompt[0].numpy())
        xs = [s[0].numpy() for s in steps]

        def moec_step(x):
            sequence.rewind(c)
            return sequence(x=x)["y"]

        err = float(np.abs(moec_step(xs[0]) - expected).max() / np.abs(expected).max())
        if not err <= 1e-4:
            sys.exit(f"context {c}: moec's decode step and transformers' disagree ({err:.1e}): not timing")
        turn = {"torch": 0, "moec": 0}

        def next_of(name, items):
            turn[name] = (turn[name] + 1) % len(items)
            return items[turn[name]]

        with torch.no_grad():
            ms = 1e3 * bench(lambda: torch_step(next_of("torch", steps)))
        mm = 1e3 * bench(lambda: moec_step(next_of("moec", xs)))
        print(f"{c:>7} {ms:>16.2f} {mm:>9.2f} {ms / mm:>8.2f}×  {err:.1e}")
        sequence.close()
    plan.close()


if __name__ == "__main__":
    main()

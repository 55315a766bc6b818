"""moec.torch and moec.transformers: tiny models of each supported family (built by
scripts/make_python_fixtures.py into a temporary folder) generate the same 32 greedy tokens, with
logits within 1e-4, patched and unpatched (fp32): their MoE blocks patched, or (whole_layers) their
decoder layers, attention and KV cache included."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import support
import moec  # before torch: OMP_WAIT_POLICY
import torch
import moec.torch
import moec.transformers
import make_python_fixtures
import transformers

PROMPT = [[1, 17, 5, 42, 9, 63, 28, 11]]
NEW_TOKENS = 32
TOP_K = {name: (cfg.get("num_experts_per_tok")) for name, (_, _, cfg) in make_python_fixtures.MODELS.items()}
MOE_LAYERS = {"mixtral": [0, 1, 2], "olmoe": [0, 1, 2], "qwen3_moe": [1, 2], "deepseek_v3": [1, 2], "gpt_oss": [0, 1]}

_folders: dict[str, str] = {}
_root = None


def setUpModule():
    global _root
    _root = tempfile.mkdtemp(prefix="moec-python-tests-")
    torch.manual_seed(0)


def tearDownModule():
    shutil.rmtree(_root, ignore_errors=True)


def folder(name: str) -> str:
    if name not in _folders:
        _folders[name] = make_python_fixtures.build(name, os.path.join(_root, name))
    return _folders[name]


def load(name: str):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder(name), dtype=torch.float32)
    return model.eval()


def generate(model):
    with torch.no_grad():
        out = model.generate(torch.tensor(PROMPT), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    return out.sequences, torch.stack(out.logits)


class GenerationTests(unittest.TestCase):
    def check(self, name):
        reference = load(name)
        ref_tokens, ref_logits = generate(reference)
        model = moec.transformers.patch(load(name), threads=2)
        blocks = moec.transformers.patched_blocks(model)
        self.assertEqual([b.layer for b in blocks], MOE_LAYERS[name])
        # no block of the family's class is left
        cls = moec.transformers.FAMILIES[name].block_class
        self.assertFalse([n for n, m in model.named_modules() if type(m).__name__ == cls])
        tokens, logits = generate(model)
        self.assertEqual(tokens.tolist(), ref_tokens.tolist())
        self.assertEqual(tokens.shape[1], len(PROMPT[0]) + NEW_TOKENS)
        diff = float((logits - ref_logits).abs().max())
        self.assertLessEqual(diff, 1e-4, f"{name}: logits differ by {diff:.2e}")
        # every token went through moec's blocks: the prompt, then one token per step but the last
        stats = moec.transformers.stats(model)
        seen = len(PROMPT[0]) + NEW_TOKENS - 1
        self.assertEqual(stats["tokens"], seen)
        self.assertEqual(len(stats["expert_load"]), len(MOE_LAYERS[name]))
        for load_ in stats["expert_load"]:
            self.assertEqual(sum(load_), seen * TOP_K[name])
        self.assertEqual([entry["layer"] for entry in stats["layers"]], MOE_LAYERS[name])
        moec.transformers.close(model)

    def test_mixtral(self):
        self.check("mixtral")

    def test_olmoe(self):
        self.check("olmoe")

    def test_qwen3_moe(self):
        self.check("qwen3_moe")

    def test_deepseek_v3(self):
        self.check("deepseek_v3")

    def test_gpt_oss(self):
        self.check("gpt_oss")


class WholeLayerTests(unittest.TestCase):
    """patch(whole_layers=True): each decoder layer with a MoE block, attention included, is a moec
    plan of graphs/decoder keeping its own KV cache (a moec.Sequence)."""

    def check(self, name):
        reference = load(name)
        ref_tokens, ref_logits = generate(reference)
        model = moec.transformers.patch(load(name), threads=2, whole_layers=True)
        layers = moec.transformers.patched_blocks(model)
        self.assertEqual([b.layer for b in layers], MOE_LAYERS[name])
        self.assertTrue(all(isinstance(b, moec.transformers.PatchedDecoderLayer) for b in layers))
        for _ in range(2):   # a second generation (a new cache) starts the layers' sequences anew
            tokens, logits = generate(model)
            # 40 tokens: the sequences, made for 32, grew once
            self.assertEqual([b.sequence.capacity for b in layers], [64] * len(layers))
            self.assertEqual(tokens.tolist(), ref_tokens.tolist())
            diff = float((logits - ref_logits).abs().max())
            self.assertLessEqual(diff, 1e-4, f"{name}: logits differ by {diff:.2e}")
        stats = moec.transformers.stats(model)
        self.assertEqual(stats["tokens"], 2 * (len(PROMPT[0]) + NEW_TOKENS - 1))
        self.assertEqual([entry["layer"] for entry in stats["layers"]], MOE_LAYERS[name])
        moec.transformers.close(model)

    def test_mixtral(self):
        self.check("mixtral")

    def test_olmoe(self):
        self.check("olmoe")

    def test_qwen3_moe(self):
        self.check("qwen3_moe")

    def test_gpt_oss(self):
        self.check("gpt_oss")

    def test_decode_loop_with_a_cache(self):
        """The model called step by step with a DynamicCache (positions from the cache's length, as
        a serving loop does), then the cache cropped and a different continuation decoded."""
        reference, model = load("mixtral"), moec.transformers.patch(load("mixtral"), threads=1, whole_layers=True)
        prompt = torch.tensor(PROMPT)
        with torch.no_grad():
            caches = [transformers.DynamicCache(config=m.config) for m in (reference, model)]
            outs = [m(prompt, past_key_values=c, use_cache=True).logits for m, c in zip((reference, model), caches)]
            for step in range(6):
                if step == 4:   # take back the last two tokens
                    for c in caches:
                        c.crop(-2)
                nxt = torch.tensor([[3 + 7 * step]])
                outs = [m(nxt, past_key_values=c, use_cache=True).logits for m, c in zip((reference, model), caches)]
                self.assertLessEqual(float((outs[0] - outs[1]).abs().max()), 1e-4, f"step {step}")
            self.assertEqual(caches[1].get_seq_length(), len(PROMPT[0]) + 4)
        moec.transformers.close(model)

    def test_refusals(self):
        with self.assertRaisesRegex(moec.MoecError, "whole_layers is for gpt_oss, mixtral, olmoe, qwen3_moe, not 'deepseek_v3'"):
            moec.transformers.patch(load("deepseek_v3"), whole_layers=True)
        model = moec.transformers.patch(load("mixtral"), threads=1, whole_layers=True, max_tokens=10)
        with self.assertRaisesRegex(moec.MoecError, "keeps at most 10 tokens; position 11 needs more"):
            generate(model)
        moec.transformers.close(model)


class MergeTests(unittest.TestCase):
    def test_merge_stats(self):
        """Per-layer documents → one: arrays concatenated in layer order, entries named by module."""
        def doc(load, fixed=None):
            d = {"format": "moec-load-statistics", "version": 1, "graph": "g", "source": "s", "tokens": 5,
                 "batches": 2, "expert_load": [load], "expert_bytes": 100 * len(load), "imbalance": [1.5],
                 "layers": [{"name": "y", "experts": len(load)}]}
            if fixed is not None:
                d["fixed_experts"] = [fixed]
            return d
        merged = moec.transformers.merge_stats(
            [("model.layers.1.mlp", 1, doc([1, 2, 3])), ("model.layers.3.mlp", 3, doc([4, 0, 6], fixed=[1]))],
            "qwen3_moe", "test")
        self.assertEqual(merged["graph"], "qwen3_moe")
        self.assertEqual(merged["source"], "test")
        self.assertEqual(merged["tokens"], 5)
        self.assertEqual(merged["batches"], 2)
        self.assertEqual(merged["expert_load"], [[1, 2, 3], [4, 0, 6]])
        self.assertEqual(merged["expert_bytes"], 300)
        self.assertEqual(merged["imbalance"], [1.5, 1.5])
        self.assertEqual(merged["fixed_experts"], [[], [1]])
        self.assertEqual(merged["layers"], [{"name": "model.layers.1.mlp", "experts": 3, "layer": 1},
                                            {"name": "model.layers.3.mlp", "experts": 3, "layer": 3}])
        with self.assertRaises(moec.MoecError):
            moec.transformers.merge_stats([], "g")


class PatchTests(unittest.TestCase):
    def test_block_outputs_match(self):
        """Each patched block returns what the block it replaced returned (gpt-oss: a tuple)."""
        for name in ("gpt_oss", "deepseek_v3"):
            reference = load(name)
            model = moec.transformers.patch(load(name), threads=1)
            x = torch.randn(2, 5, reference.config.hidden_size)
            for layer in MOE_LAYERS[name]:
                with torch.no_grad():
                    want = reference.model.layers[layer].mlp(x)
                    got = model.model.layers[layer].mlp(x)
                self.assertEqual(type(got), type(want))
                for g, w in (zip(got, want) if isinstance(want, tuple) else [(got, want)]):
                    self.assertEqual(g.shape, w.shape)
                    self.assertLess(float((g - w).abs().max()), 1e-5)
            moec.transformers.close(model)

    def test_router_logits(self):
        """output_router_logits: the same router logits, and the same auxiliary loss."""
        reference = load("mixtral")
        model = moec.transformers.patch(load("mixtral"), threads=1)
        ids = torch.tensor(PROMPT)
        with torch.no_grad():
            want = reference(ids, output_router_logits=True)
            got = model(ids, output_router_logits=True)
        self.assertEqual(len(got.router_logits), len(want.router_logits))
        for g, w in zip(got.router_logits, want.router_logits):
            self.assertLess(float((g - w).abs().max()), 1e-5)
        self.assertLess(abs(float(got.aux_loss) - float(want.aux_loss)), 1e-5)
        self.assertLess(float((got.logits - want.logits).abs().max()), 1e-4)
        moec.transformers.close(model)

    def test_narrower_weights(self):
        """Narrower weights: still generates, and its logits stay near fp32's."""
        reference = load("mixtral")
        _, ref_logits = generate(reference)
        model = moec.transformers.patch(load("mixtral"), weights="int8", threads=1)
        _, logits = generate(model)
        self.assertEqual(logits.shape, ref_logits.shape)
        self.assertTrue(torch.isfinite(logits).all())
        self.assertLess(float((logits[0] - ref_logits[0]).abs().max()), 0.1 * float(ref_logits[0].abs().max()))
        moec.transformers.close(model)

    def test_unsupported_family_refused_by_name(self):
        config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1)
        model = transformers.LlamaForCausalLM(config)
        with self.assertRaises(moec.MoecError) as e:
            moec.transformers.patch(model)
        self.assertIn("'llama'", str(e.exception))
        self.assertIn("mixtral", str(e.exception))

    def test_patch_twice_and_missing_folder(self):
        model = moec.transformers.patch(load("olmoe"), threads=1)
        with self.assertRaises(moec.MoecError) as e:
            moec.transformers.patch(model)
        self.assertIn("already patched", str(e.exception))
        moec.transformers.close(model)
        model = load("olmoe")
        model.name_or_path = "/nonexistent/olmoe"
        model.config._name_or_path = "/nonexistent/olmoe"
        with self.assertRaises(moec.MoecError) as e:
            moec.transformers.patch(model)
        self.assertIn("/nonexistent/olmoe", str(e.exception))
        # a folder whose checkpoint is another model's
        with self.assertRaises(moec.MoecError):
            moec.transformers.patch(load("olmoe"), model_path=folder("mixtral"))

    def test_moe_block_module(self):
        """moec.torch.MoEBlock: a [batch, seq, hidden] tensor in, the same shape out, the values of
        transformers' block; a bf16 input comes back bf16."""
        reference = load("qwen3_moe")
        plan = moec.compile("qwen3_moe", model=folder("qwen3_moe"), params={"layer": 2}, threads=1)
        block = moec.torch.MoEBlock(plan)
        x = torch.randn(3, 4, reference.config.hidden_size)
        with torch.no_grad():
            want = reference.model.layers[2].mlp(x)
        got = block(x)
        self.assertEqual(got.shape, want.shape)
        self.assertLess(float((got - want).abs().max()), 1e-5)
        self.assertEqual(block(x.to(torch.bfloat16)).dtype, torch.bfloat16)
        # a view that is not contiguous is copied first; a 2-D input and a single row read in place
        xt = x.transpose(0, 1)
        self.assertTrue(torch.equal(block(xt), block(xt.contiguous())))
        self.assertTrue(torch.equal(block(x.reshape(12, -1)), got.reshape(12, -1)))
        self.assertTrue(torch.equal(block(x[1, 2]), got[1, 2]))
        with self.assertRaises(moec.MoecError):
            block(torch.randn(3, reference.config.hidden_size + 1))
        block.close()
        with self.assertRaises(moec.MoecError):
            block(x)

    def test_moe_block_from_threads(self):
        """One block called from several threads at once: each call gets its own input's result."""
        import threading
        plan = moec.compile("mixtral", model=folder("mixtral"), params={"layer": 1}, threads=2)
        block = moec.torch.MoEBlock(plan)
        xs = [torch.randn(1 + t % 2, 32) for t in range(6)]   # three threads per token count
        serial = [block(x) for x in xs]
        failures = []

        def work(i):
            for _ in range(40):
                if not torch.equal(block(xs[i]), serial[i]):
                    failures.append(i)
                    return

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        block.close()
        self.assertEqual(failures, [])

    def test_stats_for_moec_place(self):
        cli = support.moec_cli()
        model = moec.transformers.patch(load("deepseek_v3"), threads=1)
        generate(model)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "stats.json")
            doc = moec.transformers.stats(model, path)
            with open(path) as f:
                self.assertEqual(json.load(f), doc)
            self.assertEqual(doc["graph"], "deepseek_v3")
            self.assertEqual([len(row) for row in doc["expert_load"]], [16, 16])
            for key in ("imbalance", "entropy", "top1_top2_margin"):
                self.assertEqual(len(doc[key]), 2, key)
            if cli is None:
                self.skipTest("no moec build in .build: 'moec place --load' not run")
            r = subprocess.run([cli, "place", "--load", path, "--workers", "4"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            placement = json.loads(r.stdout)
            self.assertTrue(placement)
        moec.transformers.reset_stats(model)
        self.assertEqual(moec.transformers.stats(model)["tokens"], 0)
        moec.transformers.close(model)


if __name__ == "__main__":
    unittest.main()

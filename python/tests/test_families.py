"""Every family moec.transformers supports beyond the five of test_transformers.py: a tiny model
(scripts/make_family_fixtures.py's configuration of the family, written with save_pretrained)
generates the same 16 greedy tokens patched and unpatched, logits within 1e-4; and asked for
router logits, it returns transformers' own (and the same auxiliary loss)."""
from __future__ import annotations

import os
import shutil
import tempfile
import unittest

import support  # noqa: F401
import moec  # noqa: F401  (before torch: OMP_WAIT_POLICY)
import moec.transformers
import torch

_threads = torch.get_num_threads()
import make_family_fixtures  # noqa: E402  (make_fixtures, which it imports, sets torch to 1 thread)
from make_fixtures import init_all  # noqa: E402
import transformers  # noqa: E402

torch.set_num_threads(_threads)

# model type → the fixture configuration (make_family_fixtures.FAMILIES) that builds it
FIXTURE = {"aria_text": "aria"}
FIRST_FIVE = {"mixtral", "olmoe", "qwen3_moe", "deepseek_v3", "gpt_oss"}


def build(fixture: str, folder: str) -> None:
    config_class, model_class, kwargs = make_family_fixtures.FAMILIES[fixture][:3]
    kwargs = dict(kwargs)
    if "kv_lora_rank" in kwargs and "num_key_value_heads" in kwargs:
        # MLA attention: transformers' cache needs as many KV heads as heads to generate.
        kwargs["num_key_value_heads"] = kwargs.get("num_attention_heads", 2)
    torch.manual_seed(1)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**kwargs))
    init_all(model, 5, bias_std=0.1)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():  # selection biases large enough to change which experts are chosen
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith(("e_score_correction_bias", "expert_bias")):
                t.copy_(0.3 * torch.randn(tuple(t.shape), generator=g))
    model.eval().save_pretrained(folder)


class FamilyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="moec-families-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_every_family(self):
        kw = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, output_logits=True,
                  return_dict_in_generate=True, pad_token_id=0)
        ids = torch.tensor([[1, 5, 9, 3, 7]])
        families = sorted(set(moec.transformers.FAMILIES) - FIRST_FIVE)
        self.assertGreater(len(families), 20)
        for model_type in families:
            with self.subTest(model_type):
                fixture = FIXTURE.get(model_type, model_type)
                folder = os.path.join(self.root, fixture)
                build(fixture, folder)
                cls = getattr(transformers, make_family_fixtures.FAMILIES[fixture][1])
                reference = cls.from_pretrained(folder, dtype=torch.float32).eval()
                self.assertEqual(reference.config.model_type, model_type)
                model = moec.transformers.patch(cls.from_pretrained(folder, dtype=torch.float32).eval(), threads=1)
                self.assertTrue(moec.transformers.patched_blocks(model))
                with torch.no_grad():
                    want = reference.generate(ids, **kw)
                    got = model.generate(ids, **kw)
                self.assertEqual(got.sequences.tolist(), want.sequences.tolist())
                diff = float((torch.stack(got.logits) - torch.stack(want.logits)).abs().max())
                self.assertLessEqual(diff, 1e-4)
                with torch.no_grad():
                    want = reference(ids, output_router_logits=True)
                    got = model(ids, output_router_logits=True)
                self.assertEqual(len(got.router_logits), len(want.router_logits))
                for g, w in zip(got.router_logits, want.router_logits):
                    self.assertLess(float((g - w).abs().max()), 1e-5)
                if getattr(want, "aux_loss", None) is not None:
                    self.assertLess(abs(float(got.aux_loss) - float(want.aux_loss)), 1e-5)
                moec.transformers.close(model)


if __name__ == "__main__":
    unittest.main()

"""A whole decoder layer (graphs/decoder: attention and MoE block) from Python: the plan says its
tokens are one sequence, matches transformers' layer on the committed fixture (at once, and a
token at a time through a `moec.Sequence`), and moec.torch refuses a batch of sequences rather
than running them as one."""
from __future__ import annotations

import os
import unittest

import numpy as np

import support
import moec  # before torch: OMP_WAIT_POLICY
import torch
import moec.torch

DECODER = os.path.join(support.FIXTURES, "decoder", "mixtral")   # hidden 24, 13 tokens
BLOCK = os.path.join(support.FIXTURES, "mixtral-h24-f40-e8-k2-s3")


class DecoderLayerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.x = np.load(os.path.join(DECODER, "x.npy"))
        cls.y = np.load(os.path.join(DECODER, "y.npy"))
        cls.plan = moec.compile(os.path.join(support.REPO, "graphs", "decoder", "mixtral.moe"), model=DECODER, threads=2)

    @classmethod
    def tearDownClass(cls):
        cls.plan.close()

    def test_is_a_sequence(self):
        self.assertTrue(self.plan.is_sequence)
        with moec.compile("mixtral", model=BLOCK, params={"layer": 1}, threads=1) as block:
            self.assertFalse(block.is_sequence)

    def test_matches_transformers(self):
        y = self.plan(x=self.x)["y"]
        self.assertLess(float(np.abs(y - self.y).max() / np.abs(self.y).max()), 1e-5)

    def test_module_runs_one_sequence_and_refuses_a_batch(self):
        block = moec.torch.MoEBlock(self.plan, owns_plan=False)
        one = block(torch.from_numpy(self.x)[None])
        self.assertEqual(tuple(one.shape), (1,) + self.x.shape)
        self.assertLess(float((one[0] - torch.from_numpy(self.y)).abs().max() / np.abs(self.y).max()), 1e-5)
        two = torch.from_numpy(np.stack([self.x, self.x]))
        with self.assertRaisesRegex(moec.MoecError, r"one sequence at a time: got \(2, 13, 24\), 2 sequences"):
            block(two)

    def test_sequence_decodes_a_token_at_a_time(self):
        tokens = self.x.shape[0]
        with self.plan.sequence(tokens) as seq:
            self.assertEqual(len(seq), 0)
            rows = [seq(x=self.x[:4])["y"]] + [seq(x=self.x[t:t + 1])["y"] for t in range(4, tokens)]
            self.assertEqual(len(seq), tokens)
            y = np.concatenate(rows)
            self.assertLess(float(np.abs(y - self.y).max() / np.abs(self.y).max()), 1e-5)
            with self.assertRaisesRegex(moec.MoecError, r"holds 13 of its 13 tokens: 1 more does not fit"):
                seq(x=self.x[:1])
            self.assertEqual(len(seq), tokens)
            # Take back the last two tokens and decode them again: the same rows.
            seq.rewind(tokens - 2)
            again = np.concatenate([seq(self.x[t:t + 1])["y"] for t in range(tokens - 2, tokens)])
            np.testing.assert_array_equal(again, y[tokens - 2:])
            with self.assertRaisesRegex(moec.MoecError, "cannot rewind a sequence of 13 tokens to 14"):
                seq.rewind(tokens + 1)
        with self.assertRaisesRegex(moec.MoecError, r"was freed \(moec_sequence_free\)"):
            len(seq)
        # Made small, grown after the prompt: the same rows.
        with self.plan.sequence(4) as small:
            rows = [small(x=self.x[:4])["y"]]
            self.assertEqual(small.capacity, 4)
            small.reserve(tokens)
            self.assertEqual((small.capacity, len(small)), (tokens, 4))
            rows += [small(x=self.x[t:t + 1])["y"] for t in range(4, tokens)]
            np.testing.assert_array_equal(np.concatenate(rows), y)
            with self.assertRaisesRegex(moec.MoecError, "at least 1"):
                small.reserve(0)
        with self.assertRaisesRegex(moec.MoecError, "at least 1"):
            self.plan.sequence(0)


if __name__ == "__main__":
    unittest.main()

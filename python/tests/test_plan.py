"""moec's numpy API over libMoEC: results against transformers' outputs stored in Tests/Fixtures,
and bad input reported as MoecError (never a crash)."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

import support  # noqa: F401  (puts python/ first on sys.path)
import moec

MIXTRAL = os.path.join(support.FIXTURES, "mixtral-h24-f40-e8-k2-s3")       # hidden 24, 8 experts, top-2, layer 1
OLMOE = os.path.join(support.FIXTURES, "olmoe-h20-f12-e8-k2-t7-s52-norm")  # hidden 20, layer 0


def fixture(folder):
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    return meta, np.load(os.path.join(folder, "x.npy")), np.load(os.path.join(folder, "y.npy"))


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class PlanTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.meta, cls.x, cls.y = fixture(MIXTRAL)
        cls.plan = moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1, record_routing=True)

    @classmethod
    def tearDownClass(cls):
        cls.plan.close()

    def test_version_and_library(self):
        self.assertRegex(moec.version(), r"^\d+\.\d+")
        self.assertTrue(os.path.exists(moec.library_path()))

    def test_inputs_and_outputs(self):
        self.assertEqual([(s.name, s.dtype, s.shape) for s in self.plan.inputs], [("x", np.float32, ("tokens", 24))])
        self.assertEqual([(s.name, s.dtype, s.shape) for s in self.plan.outputs], [("y", np.float32, ("tokens", 24))])
        self.assertEqual(self.plan.output_shape("y", 5), (5, 24))

    def test_matches_transformers(self):
        y = self.plan(x=self.x)["y"]
        self.assertEqual(y.shape, self.y.shape)
        self.assertLess(rel_err(y, self.y), 1e-5)
        # positional input, and an input that must be converted (float64, not contiguous)
        self.assertLess(rel_err(self.plan(self.x)["y"], self.y), 1e-5)
        wide = np.asfortranarray(self.x.astype(np.float64))
        self.assertLess(rel_err(self.plan(x=wide)["y"], self.y), 1e-5)

    def test_caller_owned_output(self):
        out = np.full(self.y.shape, np.nan, dtype=np.float32)
        result = self.plan(x=self.x, out={"y": out})
        self.assertIs(result["y"], out)
        self.assertLess(rel_err(out, self.y), 1e-5)

    def test_single_token_rows(self):
        for t in range(self.x.shape[0]):
            y = self.plan(x=self.x[t:t + 1])["y"]
            self.assertLess(float(np.max(np.abs(y[0] - self.y[t]))), 1e-5 * float(np.max(np.abs(self.y))))

    def test_stats(self):
        with moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1, record_routing=True) as plan:
            plan(x=self.x)
            plan(x=self.x[:3])
            s = plan.stats()
            self.assertEqual(s["format"], "moec-load-statistics")
            self.assertEqual(s["tokens"], self.x.shape[0] + 3)
            self.assertEqual(len(s["expert_load"]), 1)
            self.assertEqual(sum(s["expert_load"][0]), 2 * (self.x.shape[0] + 3))   # top-2
            # the experts transformers chose (topk_idx.npy), counted by hand
            idx = np.load(os.path.join(MIXTRAL, "topk_idx.npy"))
            expected = np.bincount(np.concatenate([idx.ravel(), idx[:3].ravel()]), minlength=8)
            self.assertEqual(s["expert_load"][0], expected.tolist())
            plan.reset_stats()
            self.assertEqual(plan.stats()["tokens"], 0)

    def test_stats_without_recording_is_an_error(self):
        with moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1) as plan:
            with self.assertRaises(moec.MoecError):
                plan.stats()

    def test_save_and_load(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "plan.json")
            self.plan.save(path)
            with moec.load(path, threads=1) as plan:
                self.assertLess(rel_err(plan(x=self.x)["y"], self.y), 1e-5)

    # ------------------------------------------------------------------ bad input

    def test_wrong_shapes(self):
        for bad in (np.zeros((3, 25), np.float32), np.zeros(24, np.float32), np.zeros((2, 3, 24), np.float32),
                    np.zeros((0, 24), np.float32)[:, :0]):
            with self.assertRaises(moec.MoecError, msg=str(bad.shape)) as e:
                self.plan(x=bad)
            self.assertTrue(str(e.exception))
        with self.assertRaises(moec.MoecError):
            self.plan(x=self.x, out={"y": np.zeros((self.x.shape[0], 23), np.float32)})
        with self.assertRaises(TypeError):
            self.plan(x=self.x, out={"y": np.zeros(self.y.shape, np.float64)})
        with self.assertRaises(TypeError):
            self.plan(z=self.x)
        with self.assertRaises(TypeError):
            self.plan()

    def test_raw_buffers(self):
        """The C API's own checks, reached from Python: a wrong element type, a NULL buffer, a
        wrong number of inputs, a negative extent."""
        x, y = self.x, np.empty_like(self.y)
        good_in = [(x.ctypes.data, x.shape, 0)]
        good_out = [(y.ctypes.data, y.shape, 0)]
        for ins, outs in (([(x.ctypes.data, x.shape, 1)], good_out),      # int32 input
                          ([(x.ctypes.data, x.shape, 7)], good_out),      # unknown dtype
                          ([(0, x.shape, 0)], good_out),                  # NULL input
                          (good_in, [(0, y.shape, 0)]),                   # NULL output
                          ([], good_out), (good_in + good_in, good_out),  # input count
                          (good_in, []),                                  # output count
                          ([(x.ctypes.data, (-7, 24), 0)], good_out)):    # negative extent
            with self.assertRaises(moec.MoecError):
                self.plan.run_buffers(ins, outs)
        self.plan.run_buffers(good_in, good_out)
        self.assertLess(rel_err(y, self.y), 1e-5)

    def test_wrong_output_shape_leaves_buffer_untouched(self):
        out = np.full((self.x.shape[0], 23), 7.0, np.float32)
        with self.assertRaises(moec.MoecError):
            self.plan(x=self.x, out={"y": out})
        self.assertTrue(np.all(out == 7.0))

    def test_freed_plan(self):
        plan = moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1, record_routing=True)
        plan.close()
        self.assertTrue(plan.closed)
        with self.assertRaises(moec.MoecError):
            plan(x=self.x)
        with self.assertRaises(moec.MoecError):
            plan.run_buffers([(self.x.ctypes.data, self.x.shape, 0)], [(self.x.ctypes.data, self.x.shape, 0)])
        with self.assertRaises(moec.MoecError):
            plan.stats()
        with self.assertRaises(moec.MoecError):
            plan.save(os.path.join(tempfile.gettempdir(), "never-written.json"))
        plan.close()  # twice: nothing

    def test_unknown_handle(self):
        with self.assertRaises(moec.MoecError):
            moec.Plan(123456789)

    def test_missing_model_and_graph(self):
        with self.assertRaises(moec.MoecError) as e:
            moec.compile("mixtral", model="/nonexistent/model", params={"layer": 1})
        self.assertIn("/nonexistent/model", str(e.exception))
        with self.assertRaises(moec.MoecError):
            moec.compile("/nonexistent/graph.moe", model=MIXTRAL)
        with self.assertRaises(moec.MoecError):
            moec.load("/nonexistent/plan.json")

    def test_missing_layer(self):
        with self.assertRaises(moec.MoecError) as e:
            moec.compile("mixtral", model=MIXTRAL, params={"layer": 7})
        self.assertIn("layers.7", str(e.exception))

    def test_located_graph_error(self):
        with tempfile.TemporaryDirectory() as d:
            graph = os.path.join(d, "bad.moe")
            with open(graph, "w") as f:
                f.write("model bad\ninput x: [tokens, 8]\nlet y = x |> nosuchop\noutput y\n")
            with self.assertRaises(moec.MoecError) as e:
                moec.compile(graph, model=MIXTRAL)
            self.assertRegex(str(e.exception), r"bad\.moe:3:\d+: error: ")

    def test_bad_weight_format(self):
        with self.assertRaises(moec.MoecError):
            moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, weights="int3")

    def test_missing_library(self):
        code = "import moec\ntry:\n    moec.version()\nexcept moec.MoecError as e:\n    print('MoecError:', e)\n"
        env = dict(os.environ, MOEC_LIBRARY="/nonexistent/libMoEC.so", PYTHONPATH=support.PYTHON)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("MoecError: cannot load libMoEC", r.stdout)
        self.assertIn("/nonexistent/libMoEC.so", r.stdout)

    def test_collected_plan_is_freed(self):
        plan = moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1)
        handle = plan.handle
        del plan
        gc.collect()
        with self.assertRaises(moec.MoecError):
            moec.Plan(handle)


class ConcurrencyTests(unittest.TestCase):
    def test_concurrent_runs_of_different_plans(self):
        _, xm, ym = fixture(MIXTRAL)
        _, xo, yo = fixture(OLMOE)
        plans = [moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1),
                 moec.compile("olmoe", model=OLMOE, params={"layer": 0}, threads=2)]
        inputs = [xm, xo]
        serial = [p(x=x)["y"] for p, x in zip(plans, inputs)]
        self.assertLess(rel_err(serial[0], ym), 1e-5)
        self.assertLess(rel_err(serial[1], yo), 1e-5)
        failures = []

        def work(i):
            try:
                for _ in range(50):
                    y = plans[i % 2](x=inputs[i % 2])["y"]
                    if not np.array_equal(y, serial[i % 2]):
                        failures.append(f"thread {i}: a result differs from the serial run")
                        return
            except Exception as e:  # noqa: BLE001
                failures.append(f"thread {i}: {e!r}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]   # each plan from 3 threads
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in plans:
            p.close()
        self.assertEqual(failures, [])

    def test_closing_while_others_run(self):
        _, xm, _ = fixture(MIXTRAL)
        plan = moec.compile("mixtral", model=MIXTRAL, params={"layer": 1}, threads=1)
        outcomes = []

        def work():
            for _ in range(200):
                try:
                    plan(x=xm)
                except moec.MoecError:
                    outcomes.append("error")
                    return
            outcomes.append("ran")

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        plan.close()
        for t in threads:
            t.join()
        self.assertEqual(len(outcomes), 2)   # every thread ended: with a MoecError or all its runs


if __name__ == "__main__":
    unittest.main()

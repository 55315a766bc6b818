#!/usr/bin/env python3
"""Run moec on broken copies of the fixtures' model folders and inputs, and report every case it mishandles.

The companion of mutate_graphs.py for what a model folder and an input file can hold. Each case
copies one fixture (Tests/Fixtures/*: its config.json, safetensors file(s), shard index, x.npy)
and breaks one or two things in it:

  safetensors   truncated; the 8-byte header length wrong (0, past the end, 2^63, 2^64 - 1);
                header bytes flipped; a tensor's data_offsets past the end, reversed, overlapping
                another's, negative, huge, not numbers; its dtype unknown or of another size; its
                shape overflowing, negative, of the wrong product, not a list; a tensor removed;
                a name given twice; the file empty, all zeros, or a folder
  shards        a shard deleted; an index naming a missing file, a file outside the folder, or
                not JSON; an index without its weight_map
  config.json   truncated, junk, missing; a key set to null, a huge or negative number, a string,
                a list, an object, 1e308, or arrays nested 100,000 deep
  GGUF file     (Tests/Fixtures/gguf/ARCH-*.gguf, run by graphs/gguf/ARCH.moe)
                truncated; bytes of its header and tensor directory flipped or overwritten
                by huge numbers
  x.npy         truncated; header length wrong; dtype <f8, <i4, |b1, >f4; fortran_order; shape
                of the wrong rank, the wrong size, huge

and runs the release moec on it in a folder of its own, with a 20 s timeout:

    moec run GRAPH --model model --set … --input x=x.npy --output y=out/y.npy

where GRAPH and the --set values are the fixture's own (its meta.json). A run is reported when it
crashed (a signal), hung, exited 0 with an `error:` line, exited non-zero without one, or failed
and left a file in out/. Every fixture is first run unbroken, which must succeed.

    python3 scripts/mutate_models.py                  # 300 cases, seed 1
    python3 scripts/mutate_models.py --cases 1000 --seed 7

Failing cases are copied to --out (default: a fresh temporary folder, printed at the end) with a
report.txt each. Exit status 1 if any case failed. Needs only Python's standard library.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutate_graphs import ROOT, judge, moec_binary, run_case  # noqa: E402

FIXTURES = ROOT / "Tests" / "Fixtures"


# MARK: - The fixtures that can be run: their graph and --set values

def runnable_fixtures() -> list[tuple[Path, str, list[str]]]:
    found = []
    for d in sorted(FIXTURES.iterdir()):
        meta, x = d / "meta.json", d / "x.npy"
        if not (meta.is_file() and x.is_file()):
            continue
        m = json.loads(meta.read_text())
        if "graph" in m:
            graph, sets = m["graph"], [f"{k}={v}" for k, v in m.get("set", {}).items()]
        elif m.get("family") == "mixtral" and "layer" in m:
            stacked = "stacked" in d.name
            graph, sets = f"graphs/mixtral{'_stacked' if stacked else ''}.moe", [f"layer={m['layer']}"]
        else:
            continue
        if (ROOT / graph).is_file():
            found.append((d, graph, sets))
    # GGUF files (llama.cpp's): the file is the model, its input beside it as NAME.x.npy.
    for g in sorted((FIXTURES / "gguf").glob("*-*.gguf")):
        if "-split-" in g.name:
            continue
        found.append((g, f"graphs/gguf/{g.name.split('-')[0]}.moe", ["layer=0"]))
    return found


# MARK: - safetensors

def read_safetensors(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header_text: bytes, data: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header_text)) + header_text + data)


def tensor_names(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"]


def st_truncate(p: Path, r: random.Random) -> str:
    raw = p.read_bytes()
    at = r.choice([0, 4, 8, r.randrange(len(raw) + 1), max(len(raw) - 1, 0)])
    p.write_bytes(raw[:at])
    return f"truncated at byte {at}"


def st_header_length(p: Path, r: random.Random) -> str:
    raw = bytearray(p.read_bytes())
    v = r.choice([0, 1, 7, len(raw), len(raw) - 7, 2**53 + 1, 2**63 - 1, 2**64 - 1, r.randrange(2**64)])
    raw[:8] = struct.pack("<Q", v)
    p.write_bytes(bytes(raw))
    return f"header length {v}"


def st_flip(p: Path, r: random.Random) -> str:
    raw = bytearray(p.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    for _ in range(r.randint(1, 8)):
        raw[8 + r.randrange(n)] = r.randrange(256)
    p.write_bytes(bytes(raw))
    return "header bytes flipped"


def st_field(p: Path, r: random.Random) -> str:
    header, data = read_safetensors(p)
    names = tensor_names(header)
    name = r.choice(names)
    t = header[name]
    lo, hi = t["data_offsets"]
    other = header[r.choice(names)]["data_offsets"]
    kind = r.choice(["offsets", "offsets", "dtype", "shape", "remove", "duplicate"])
    if kind == "offsets":
        t["data_offsets"] = r.choice([
            [lo, len(data) + 4], [len(data), len(data) + (hi - lo)], [hi, lo], [other[0], other[0] + (hi - lo)],
            [-4, hi - lo - 4], [2**63, 2**63 + (hi - lo)], [2**64 - 4, 2**64], [lo + 0.5, hi], ["0", hi], [lo], None])
        what = f"{name}: data_offsets {t['data_offsets']}"
    elif kind == "dtype":
        t["dtype"] = r.choice(["F16", "BF16", "F64", "I8", "I64", "BOOL", "U8", "Q4_K", "", 7, None, "F8_E4M3"])
        what = f"{name}: dtype {t['dtype']!r}"
    elif kind == "shape":
        t["shape"] = r.choice([[2**40, 2**40], [2**62, 4], [-1] + t["shape"][1:], [], [0], t["shape"][::-1] + [2],
                               [t["shape"][0] + 1] + t["shape"][1:], "3", [[1]], [1.5, 2], None])
        what = f"{name}: shape {t['shape']!r}"
    elif kind == "remove":
        del header[name]
        what = f"{name} removed"
    else:
        text = json.dumps(header)
        entry = json.dumps({name: dict(t, data_offsets=other)})[1:-1]
        write_safetensors(p, (text[:-1] + ", " + entry + "}").encode(), data)
        return f"{name} given twice"
    write_safetensors(p, json.dumps(header).encode(), data)
    return what


def st_replace(p: Path, r: random.Random) -> str:
    kind = r.choice(["empty", "zeros", "folder", "junk"])
    size = p.stat().st_size
    p.unlink()
    if kind == "folder":
        p.mkdir()
    else:
        p.write_bytes(b"" if kind == "empty" else bytes(size) if kind == "zeros" else r.randbytes(size))
    return f"{p.name}: {kind}"


# MARK: - shards, config.json, x.npy

def shard_break(model: Path, r: random.Random) -> str:
    index = model / "model.safetensors.index.json"
    shards = sorted(model.glob("*.safetensors"))
    if not index.exists():
        # One file: an index that names it and a missing (or outside) second file.
        header, _ = read_safetensors(shards[0])
        names = tensor_names(header)
        missing = r.choice(["model-00002-of-00002.safetensors", "../outside.safetensors", "/etc/passwd", ""])
        weight_map = {n: (missing if i == len(names) - 1 else shards[0].name) for i, n in enumerate(names)}
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        return f"index naming {missing!r}"
    kind = r.choice(["delete", "junk", "no map", "bad entry"])
    if kind == "delete":
        victim = r.choice(shards)
        victim.unlink()
        return f"{victim.name} deleted"
    if kind == "junk":
        raw = index.read_bytes()
        index.write_bytes(raw[: r.randrange(len(raw))])
        return "index truncated"
    doc = json.loads(index.read_text())
    if kind == "no map":
        del doc["weight_map"]
    else:
        k = r.choice(list(doc["weight_map"]))
        doc["weight_map"][k] = r.choice([None, 3, ["a"], "missing.safetensors", "../x.safetensors"])
    index.write_text(json.dumps(doc))
    return f"index: {kind}"


def config_break(model: Path, r: random.Random) -> str:
    path = model / "config.json"
    kind = r.choice(["truncate", "junk", "missing", "value", "value", "value"])
    if kind == "missing":
        path.unlink()
        return "config.json missing"
    raw = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(raw[: r.randrange(len(raw) + 1)])
        return "config.json truncated"
    if kind == "junk":
        path.write_bytes(r.randbytes(r.randint(1, 200)))
        return "config.json junk"
    doc = json.loads(raw)
    keys = [k for k, v in doc.items() if isinstance(v, (int, float, str, bool, list)) or v is None]
    key = r.choice(keys)
    value = r.choice([None, 2**63, 2**64 + 1, -1, 0, "8", [1, 2], {}, 1e308, -0.0, True, "DEEP"])
    text = json.dumps(dict(doc, **{key: value}))
    if value == "DEEP":
        text = text.replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    path.write_text(text)
    return f"config {key} = {str(value)[:20]}"


def npy_break(x: Path, r: random.Random) -> str:
    raw = x.read_bytes()
    if len(raw) < 10:
        x.write_bytes(raw[: r.randrange(len(raw) + 1)])
        return "x.npy truncated"
    hlen = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + hlen].decode("latin1")
    kind = r.choice(["truncate", "length", "dtype", "fortran", "shape"])
    if kind == "truncate":
        x.write_bytes(raw[: r.randrange(len(raw) + 1)])
        return "x.npy truncated"
    if kind == "length":
        x.write_bytes(raw[:8] + struct.pack("<H", r.choice([0, 1, 65535, hlen + 16])) + raw[10:])
        return "x.npy header length"
    try:
        d = eval(header)  # the fixture's own header, a Python literal as numpy writes it
    except (SyntaxError, ValueError, NameError):
        # Broken already by the case's first break: truncate it too.
        x.write_bytes(raw[: r.randrange(len(raw) + 1)])
        return "x.npy truncated"
    if kind == "dtype":
        d["descr"] = r.choice(["<f8", "<i4", "|b1", ">f4", "<f2", "O"])
    elif kind == "fortran":
        d["fortran_order"] = True
    else:
        d["shape"] = r.choice([(3, 5, 7), (d["shape"][0] + 1, d["shape"][1]), (2**40, 2**40), (d["shape"][1],), (0, d["shape"][1])])
    text = repr(d).encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    x.write_bytes(raw[:8] + struct.pack("<H", len(text)) + text + raw[10 + hlen:])
    return f"x.npy {kind}: {d.get('descr')} {d.get('shape')}"


def gguf_break(path: Path, r: random.Random) -> str:
    """A GGUF file truncated, or bytes of its header, metadata and tensor directory (the first
    576 bytes of the fixtures, before their data) flipped or overwritten by huge numbers."""
    raw = bytearray(path.read_bytes())
    kind = r.choice(["truncate", "flip", "flip", "number", "number"])
    if kind == "truncate":
        at = r.choice([0, 3, 8, 20, 24, r.randrange(len(raw) + 1)])
        path.write_bytes(bytes(raw[:at]))
        return f"{path.name} truncated at byte {at}"
    head = min(len(raw), 576)
    if kind == "flip":
        for _ in range(r.randint(1, 6)):
            raw[r.randrange(head)] = r.randrange(256)
        path.write_bytes(bytes(raw))
        return f"{path.name}: header bytes flipped"
    at = r.randrange(0, head - 8)
    value = r.choice([0, 1, 2**31, 2**32 - 1, 2**62, 2**64 - 1, r.randrange(2**64)])
    raw[at:at + 8] = struct.pack("<Q", value)
    path.write_bytes(bytes(raw))
    return f"{path.name}: u64 {value} at byte {at}"


def safetensors_break(model: Path, r: random.Random) -> str:
    p = r.choice(sorted(model.glob("*.safetensors")))
    if not p.is_file():
        return f"{p.name}: already a folder"
    try:
        read_safetensors(p)
    except (ValueError, struct.error):
        # Broken already by the case's first break: truncate it too.
        return st_truncate(p, r)
    return r.choice([st_truncate, st_header_length, st_flip, st_field, st_field, st_field, st_replace])(p, r)


BREAKS = {"safetensors": safetensors_break, "shards": shard_break, "config": config_break, "npy": None}


# MARK: - Running

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--moec", help="the moec binary (default: .build/release/moec, built if missing)")
    ap.add_argument("--out", help="where failing cases are copied (default: a new temporary folder)")
    ap.add_argument("--verbose", action="store_true", help="print every case: what was broken and moec's first line")
    opts = ap.parse_args()

    moec = moec_binary(opts.moec)
    fixtures = runnable_fixtures()
    work = Path(tempfile.mkdtemp(prefix="moec-broken-models-"))
    out = Path(opts.out) if opts.out else work / "failures"
    out.mkdir(parents=True, exist_ok=True)

    def case(label: str, fixture: Path, graph: str, sets: list[str], breaks: list[str], r: random.Random):
        case_dir = work / label
        gguf = fixture.suffix == ".gguf"
        if gguf:
            case_dir.mkdir()
            shutil.copy(fixture, case_dir / "model.gguf")
            shutil.copy(fixture.with_suffix(".x.npy"), case_dir / "x.npy")
        else:
            shutil.copytree(fixture, case_dir / "model", ignore=shutil.ignore_patterns("*.npy", "meta.json"))
            shutil.copy(fixture / "x.npy", case_dir / "x.npy")
        (case_dir / "out").mkdir()
        done = []
        # The safetensors file last: the other breaks read it whole.
        for b in sorted(breaks, key=lambda b: b == "safetensors"):
            try:
                if b == "npy":
                    done.append(npy_break(case_dir / "x.npy", r))
                elif gguf:
                    done.append(gguf_break(case_dir / "model.gguf", r))
                else:
                    done.append(BREAKS[b](case_dir / "model", r))
            except (ValueError, UnicodeDecodeError, struct.error, OSError, KeyError, IndexError):
                # A second break of a file the first one made unreadable: it stays as it is.
                done.append(f"{b}: already broken")
        model = "model.gguf" if gguf else "model"
        args = ["run", str(ROOT / graph), "--model", model, "--input", "x=x.npy", "--output", "y=out/y.npy"]
        for s in sets:
            args += ["--set", s]
        code, stdout, stderr, seconds = run_case(moec, case_dir, args, opts.timeout)
        leftovers = [] if code == 0 else sorted(os.listdir(case_dir / "out"))
        return case_dir, args, done, code, stdout, stderr, seconds, judge(code, stderr, leftovers)

    # Unbroken, every fixture runs.
    for fixture, graph, sets in fixtures:
        case_dir, args, _, code, _, stderr, _, _ = case(f"clean-{fixture.name}", fixture, graph, sets, [], random.Random(0))
        if code != 0:
            print(f"the unbroken fixture {fixture.name} does not run: {stderr.decode(errors='replace')[:400]}", file=sys.stderr)
            return 2
        shutil.rmtree(case_dir)

    r = random.Random(opts.seed)
    failures = 0
    counts: dict[str, int] = {}
    outcomes = {"ok": 0, "error": 0}
    slowest = (0.0, "")
    for n in range(opts.cases):
        # One case in five breaks a GGUF file (a few of the fixtures).
        ggufs = [f for f in fixtures if f[0].suffix == ".gguf"]
        others = [f for f in fixtures if f[0].suffix != ".gguf"]
        fixture, graph, sets = r.choice(ggufs) if ggufs and r.random() < 0.2 else r.choice(others)
        kinds = ["gguf", "gguf", "npy"] if fixture.suffix == ".gguf" else ["safetensors", "safetensors", "safetensors", "shards", "config", "npy"]
        breaks = [r.choice(kinds) for _ in range(r.choice([1, 1, 1, 2]))]
        for b in breaks:
            counts[b] = counts.get(b, 0) + 1
        label = f"{n:04d}-{fixture.name}-{'+'.join(breaks)}"
        case_dir, args, done, code, stdout, stderr, seconds, problem = case(label, fixture, graph, sets, breaks, r)
        outcomes["ok" if code == 0 else "error"] += 1
        if seconds > slowest[0]:
            slowest = (seconds, label)
        if opts.verbose:
            first = stderr.decode(errors="replace").strip().split("\n")[0][:200]
            print(f"{label} ({'; '.join(done)}): exit {code}: {first}")
        if problem:
            failures += 1
            keep = out / case_dir.name
            shutil.copytree(case_dir, keep, dirs_exist_ok=True)
            (keep / "report.txt").write_bytes(
                f"fixture: {fixture.relative_to(ROOT)}\nbroken: {'; '.join(done)}\n"
                f"command: cd {keep} && {moec} {' '.join(args)}\nproblem: {problem}\nexit: {code}\n".encode()
                + b"--- stderr (first 4000 bytes)\n" + stderr[:4000] + b"\n--- stdout (first 1000 bytes)\n" + stdout[:1000])
            first = stderr.decode(errors="replace").strip().split("\n")[0][:160]
            print(f"FAIL {case_dir.name} ({'; '.join(done)}): {problem}: {first}", flush=True)
        shutil.rmtree(case_dir)
    print(f"{opts.cases} cases over {len(fixtures)} fixtures ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}): "
          f"{outcomes['ok']} ran, {outcomes['error']} ended with an error; {failures} failing; "
          f"slowest run {slowest[0]:.2f} s ({slowest[1]})")
    if failures:
        print(f"failing cases (with report.txt each): {out}")
    else:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compile mutated copies of graphs/**/*.moe with moec and report every case it mishandles.

Each case is a graph with one to three random mutations: a truncation, a deleted span, inserted
brackets, binary junk, a huge or odd number in place of a literal, an expression nested 100,000
levels deep or 10 to 128 levels (within the parser's limit), duplicated declarations, invalid
UTF-8, swapped lines, a token replaced. Every case is compiled twice by the release moec, each
run in a folder of its own with a 20 s timeout:

    moec compile case.moe --emit plan                        (the whole pipeline, no weights)
    moec compile case.moe --model examples/mixtral-tiny -o out.plan    (mixtral graphs: weights
                                                                        bound, plan written)

A run is reported when it
  - crashed (ended by a signal),
  - hung (killed after the timeout),
  - exited 0 but printed an `error:` line,
  - exited non-zero without an `error:` line,
  - failed and left a file behind (a plan, a temporary file).

    python3 scripts/mutate_graphs.py                  # 300 cases, seed 1
    python3 scripts/mutate_graphs.py --cases 1000 --seed 7 --keep

Failing cases are copied to --out (default: a fresh temporary folder, printed at the end) with
the command and its output, so each can be rerun by hand. The exit status is 1 if any case
failed. Needs only Python's standard library; builds moec (swift build -c release) if
.build/release/moec is missing.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MODEL = ROOT / "examples" / "mixtral-tiny"
ERROR_LINE = re.compile(rb"(^|: )error: ", re.MULTILINE)


# MARK: - Mutations (each takes the source bytes and a random stream, returns the new bytes)

def truncate(src: bytes, r: random.Random) -> bytes:
    return src[: r.randrange(len(src) + 1)]


def delete_span(src: bytes, r: random.Random) -> bytes:
    i = r.randrange(len(src) + 1)
    return src[:i] + src[i + r.randint(1, 60):]


def insert_at_random(src: bytes, r: random.Random, text: bytes) -> bytes:
    i = r.randrange(len(src) + 1)
    return src[:i] + text + src[i:]


def insert_brackets(src: bytes, r: random.Random) -> bytes:
    for _ in range(r.randint(1, 5)):
        src = insert_at_random(src, r, bytes(r.choice(b"()[]{}")) * r.choice([1, 1, 2, 7]))
    return src


def binary_junk(src: bytes, r: random.Random) -> bytes:
    return insert_at_random(src, r, bytes(r.randrange(256) for _ in range(r.choice([1, 8, 64, 4096]))))


HUGE_NUMBERS = [b"99999999999999999999999", b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
                b"4294967296", b"2147483648", b"65536", b"0", b"-1", b"-0", b"1e308", b"1e400", b"1e-400", b"0.5",
                b"123456789012", b"1_000_000_000_000", b"3.0", b"nan", b"0x10"]


def huge_number(src: bytes, r: random.Random) -> bytes:
    numbers = list(re.finditer(rb"\b\d[\d_]*(\.\d+)?\b", src))
    if not numbers:
        return insert_at_random(src, r, r.choice(HUGE_NUMBERS))
    m = r.choice(numbers)
    return src[: m.start()] + r.choice(HUGE_NUMBERS) + src[m.end():]


def deep_nesting(src: bytes, r: random.Random) -> bytes:
    n = 100_000
    opener, closer = r.choice([(b"(", b")"), (b"[", b"]"), (b"-", b""), (b"f(", b")"), (b"moe(", b"")])
    kind = r.choice(["brackets", "pipeline", "chain"])
    if kind == "brackets":
        deep = opener * n + b"x" + closer * (n if r.random() < 0.7 else r.randrange(n))
    elif kind == "pipeline":
        deep = b"x" + b" |> silu" * n
    else:
        deep = b"x" + b" + 1" * n
    # Into an expression after '=' or ':' (a let, an output, a moe field), or anywhere.
    spots = [m.end() for m in re.finditer(rb"(= |: )", src)]
    i = r.choice(spots) if spots and r.random() < 0.8 else r.randrange(len(src) + 1)
    return src[:i] + deep + src[i:]


def nesting_within_limit(src: bytes, r: random.Random) -> bytes:
    """An expression nested 10 to 128 levels deep (the parser's limit), so that what comes after
    the parser (the lowering, the passes) sees it: `let z = …` on the value of a `let`."""
    lets = re.findall(rb"^let (\w+) =", src, re.MULTILINE)
    if not lets:
        return deep_nesting(src, r)
    name = r.choice(lets)
    n = r.randint(10, 128)
    stage = r.choice([b"silu", b"relu", b"sigmoid", b"exp", b"sqrt", b"softmax", b"gelu", b"tanh"])
    deep = r.choice([
        b"(" * n + name + b")" * n,
        b"-" * n + name,
        name + b" |> " + stage + (b" |> " + stage) * (n - 1),
        stage + b"(" + (stage + b"(") * (n - 1) + name + b")" * n,
        name + b" + " + name + (b" * 1 + " + name) * (n // 2),
    ])
    return src + b"\nlet deep_z = " + deep + b"\noutput deep_z\n"


def duplicate_declarations(src: bytes, r: random.Random) -> bytes:
    lines = src.split(b"\n")
    decls = [i for i, l in enumerate(lines) if re.match(rb"(model|param|input|weight|let|output)\b", l)]
    if r.random() < 0.2 or not decls:
        return src + b"\n" + src
    for _ in range(r.randint(1, 3)):
        i = r.choice(decls)
        lines.insert(r.randrange(len(lines) + 1), lines[i])
    return b"\n".join(lines)


INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf", b"\x00"]


def invalid_utf8(src: bytes, r: random.Random) -> bytes:
    return insert_at_random(src, r, r.choice(INVALID_UTF8))


def swap_lines(src: bytes, r: random.Random) -> bytes:
    lines = src.split(b"\n")
    if len(lines) < 2:
        return src
    i, j = r.randrange(len(lines)), r.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def replace_token(src: bytes, r: random.Random) -> bytes:
    words = list(re.finditer(rb"[A-Za-z_][A-Za-z_0-9]*|\|>|[-+*/=:,]", src))
    if not words:
        return src
    m = r.choice(words)
    new = r.choice([b"moe", b"of", b"if", b"let", b"output", b"weights", b"true", b"from", b"e", b"{e}", b"tokens", b"x",
                    b"|>", b"-", b"*", b"", b"\"", b"#", b"topk", b"swiglu", b"softmax", b"renormalize", b"\"{e}\""])
    return src[: m.start()] + new + src[m.end():]


MUTATIONS = {
    "truncate": truncate, "delete": delete_span, "brackets": insert_brackets, "junk": binary_junk,
    "number": huge_number, "deep": deep_nesting, "nested": nesting_within_limit, "duplicate": duplicate_declarations, "utf8": invalid_utf8,
    "swap": swap_lines, "token": replace_token,
}


# MARK: - Running

def moec_binary(path: str | None) -> Path:
    if path:
        return Path(path)
    binary = ROOT / ".build" / "release" / "moec"
    if not binary.exists():
        print("building moec (swift build -c release) ...", file=sys.stderr)
        subprocess.run(["swift", "build", "-c", "release", "--product", "moec"], cwd=ROOT, check=True)
    return binary


def judge(returncode: int | None, stderr: bytes, leftovers: list[str]) -> str | None:
    """What is wrong with one run, or None."""
    if returncode is None:
        return "hung"
    if returncode < 0:
        return f"crashed (signal {signal.Signals(-returncode).name})"
    has_error = ERROR_LINE.search(stderr) is not None
    if returncode == 0 and has_error:
        return "exited 0 with an error"
    if returncode != 0 and not has_error:
        return f"exited {returncode} without an 'error:' line"
    if returncode != 0 and leftovers:
        return f"failed and left {', '.join(leftovers)}"
    return None


def run_case(moec: Path, case_dir: Path, args: list[str], timeout: float) -> tuple[int | None, bytes, bytes, float]:
    start = time.monotonic()
    try:
        p = subprocess.run([str(moec)] + args, cwd=case_dir, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
        return p.returncode, p.stdout, p.stderr, time.monotonic() - start
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", e.stderr or b"", time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--moec", help="the moec binary (default: .build/release/moec, built if missing)")
    ap.add_argument("--out", help="where failing cases are copied (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep every case's folder, not only the failing ones")
    opts = ap.parse_args()

    moec = moec_binary(opts.moec)
    graphs = sorted(p for p in (ROOT / "graphs").rglob("*.moe"))
    if not graphs:
        print("no graphs under graphs/", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="moec-mutants-"))
    out = Path(opts.out) if opts.out else work / "failures"
    out.mkdir(parents=True, exist_ok=True)
    r = random.Random(opts.seed)
    failures = 0
    counts: dict[str, int] = {}
    slowest = (0.0, "")
    for n in range(opts.cases):
        graph = r.choice(graphs)
        src = graph.read_bytes()
        names = [r.choice(list(MUTATIONS)) for _ in range(r.choice([1, 1, 1, 2, 3]))]
        for name in names:
            src = MUTATIONS[name](src, r)
            counts[name] = counts.get(name, 0) + 1
        label = f"{n:04d}-{graph.stem}-{'+'.join(names)}"
        runs = [["compile", "case.moe", "--emit", "plan"]]
        if graph.stem.startswith("mixtral"):
            runs.append(["compile", "case.moe", "--model", str(EXAMPLE_MODEL), "-o", "out.plan"])
        for k, args in enumerate(runs):
            case_dir = work / f"{label}-{k}"
            case_dir.mkdir()
            (case_dir / "case.moe").write_bytes(src)
            code, stdout, stderr, seconds = run_case(moec, case_dir, args, opts.timeout)
            if seconds > slowest[0]:
                slowest = (seconds, label)
            leftovers = sorted(set(os.listdir(case_dir)) - {"case.moe"})
            problem = judge(code, stderr, leftovers)
            if problem:
                failures += 1
                keep = out / case_dir.name
                if keep != case_dir:
                    shutil.copytree(case_dir, keep, dirs_exist_ok=True)
                (keep / "report.txt").write_bytes(
                    f"source: {graph.relative_to(ROOT)}\nmutations: {', '.join(names)}\n"
                    f"command: cd {keep} && {moec} {' '.join(args)}\nproblem: {problem}\nexit: {code}\n".encode()
                    + b"--- stderr (first 4000 bytes)\n" + stderr[:4000] + b"\n--- stdout (first 1000 bytes)\n" + stdout[:1000])
                first = stderr.decode(errors="replace").strip().split("\n")[0][:160]
                print(f"FAIL {case_dir.name}: {problem}: {first}", flush=True)
            if not opts.keep and not problem:
                shutil.rmtree(case_dir)
    print(f"{opts.cases} cases ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
          f"{failures} failing runs; slowest run {slowest[0]:.2f} s ({slowest[1]})")
    if failures:
        print(f"failing cases (with report.txt each): {out}")
    elif not opts.keep:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

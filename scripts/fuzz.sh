#!/usr/bin/env bash
# Fuzzes a part of moec with libFuzzer and AddressSanitizer for SECONDS seconds.
#
#   scripts/fuzz.sh parser 300     # the .moe lexer, parser and AST printer (seeds: graphs/**/*.moe)
#   scripts/fuzz.sh json 300       # the JSON reader and printers (seeds: every config.json and index)
#   scripts/fuzz.sh weights 300    # the safetensors and .npy readers (seeds: the example's files)
#   scripts/fuzz.sh plan 300       # a plan's graph: Graph(json:) and the verifier (seeds: plans of
#                                  # the fixtures, compiled by moec, which is built if missing)
#   scripts/fuzz.sh ir 300         # the IR text reader and printer (seeds: every .ir golden)
#
# The harnesses are in Fuzz/. SwiftPM cannot link a fuzzer into a library target, so the
# sources a harness needs (MoEBasics, plus MoESyntax, MoEIO or MoEIR) are compiled with it into
# one module by swiftc -sanitize=fuzzer,address, their `import MoEBasics` lines dropped. The
# binary and the growing corpus live in .build/fuzz/TARGET/; a crash is written there as
# crash-<hash>, and the script prints how to rerun it. Extra arguments go to libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
seconds=${2:-60}
case "$target" in
  parser) sources=(Sources/MoEBasics/*.swift Sources/MoESyntax/*.swift Fuzz/ParserFuzzer.swift) ;;
  json) sources=(Sources/MoEBasics/*.swift Fuzz/JSONFuzzer.swift) ;;
  weights) sources=(Sources/MoEBasics/*.swift Sources/MoEIO/*.swift Fuzz/WeightsFuzzer.swift) ;;
  plan) sources=(Sources/MoEBasics/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift Fuzz/PlanFuzzer.swift) ;;
  ir) sources=(Sources/MoEBasics/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift Fuzz/IRReaderFuzzer.swift) ;;
  *) echo "usage: scripts/fuzz.sh parser|json|weights|plan|ir SECONDS [libFuzzer options]" >&2; exit 2 ;;
esac
shift $(( $# > 2 ? 2 : $# ))

work=.build/fuzz/$target
mkdir -p "$work/src" "$work/corpus" "$work/seeds"
rm -f "$work"/src/*.swift
for f in "${sources[@]}"; do
  sed '/^import MoEBasics$/d' "$f" > "$work/src/$(basename "$f")"
done

echo "== building $work/fuzzer"
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name MoEFuzz \
  "$work"/src/*.swift -o "$work/fuzzer"

if [ "$target" = parser ]; then
  find graphs Tests/MoESyntaxTests/Diagnostics -name '*.moe' -exec cp {} "$work/seeds/" \;
elif [ "$target" = weights ]; then
  # The first byte picks the reader: 0 safetensors, 1 .npy. Small files only (-max_len).
  for f in Tests/Fixtures/*/model.safetensors examples/*/*.npy Tests/Fixtures/*/x.npy; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 65536 ] || continue
    case "$f" in *.npy) b='\001' ;; *) b='\000' ;; esac
    { printf "$b"; cat "$f"; } > "$work/seeds/$(echo "$f" | tr / _)"
  done
elif [ "$target" = plan ]; then
  moec=$(ls .build/release/moec .build/debug/moec 2>/dev/null | head -n 1 || true)
  if [ -z "$moec" ]; then swift build --product moec; moec=.build/debug/moec; fi
  # Each tiny fixture with its graph (graphs/MODEL_TYPE.moe), and the examples.
  for d in Tests/Fixtures/*-tiny examples/mixtral-tiny; do
    name=$(basename "$d"); g=graphs/${name%-tiny}.moe
    [ -f "$g" ] || continue
    "$moec" compile "$g" --model "$d" -o "$work/seeds/$name.plan.json" >/dev/null 2>&1 || echo "(no seed from $d)"
  done
elif [ "$target" = ir ]; then
  find Tests -name '*.ir' | while read -r f; do cp "$f" "$work/seeds/$(echo "$f" | tr / _)"; done
else
  i=0
  for f in examples/*/config.json Tests/Fixtures/*/config.json Tests/Fixtures/*/*.index.json; do
    [ -f "$f" ] && cp "$f" "$work/seeds/seed$((i++)).json"
  done
fi

echo "== fuzzing $target for $seconds s (corpus $work/corpus, seeds $work/seeds)"
cd "$work"
./fuzzer -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
  -print_final_stats=1 "$@" corpus seeds

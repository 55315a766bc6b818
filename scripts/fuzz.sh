#!/usr/bin/env bash
# Fuzzes a part of moec with libFuzzer and AddressSanitizer for SECONDS seconds.
#
#   scripts/fuzz.sh TARGET SECONDS   # fuzz, starting from the committed corpus Fuzz/corpus/TARGET
#                                    # and the seeds (CI: every target for 30 s)
#   scripts/fuzz.sh TARGET merge     # after a long run: the run's corpus minimised (libFuzzer
#                                    # -merge) into Fuzz/corpus/TARGET, the inputs that reach
#                                    # features the seeds and the committed corpus do not
#
#   scripts/fuzz.sh parser 300     # the .moe lexer, parser and AST printer (seeds: graphs/**/*.moe)
#   scripts/fuzz.sh json 300       # the JSON reader and printers (seeds: every config.json and index)
#   scripts/fuzz.sh weights 300    # the safetensors and .npy readers (seeds: the example's files)
#   scripts/fuzz.sh plan 300       # a plan's graph: Graph(json:) and the verifier (seeds: plans of
#                                  # the fixtures, compiled by moec, which is built if missing)
#   scripts/fuzz.sh ir 300         # the IR text reader and printer (seeds: every .ir golden)
#   scripts/fuzz.sh stats 300      # load statistics (moec place --load) into LoadStatistics, then
#                                  # the planner; 4 option bytes + the file (seeds: the fixtures'
#                                  # stats files, and stats written by moec for the tiny fixtures)
#   scripts/fuzz.sh placement 300  # a placement or plan file (moec run --placement, place
#                                  # --previous) into ExpertPlacement, then the planner with it as
#                                  # the previous placement (seeds: placements moec place writes)
#   scripts/fuzz.sh config 300     # config.json bound into the params of graphs/*.moe and lowered
#                                  # (first byte picks the graph; seeds: every config.json)
#   scripts/fuzz.sh source 300     # a .moe source parsed, lowered with its params' defaults,
#                                  # verified, and through every pass (seeds: as parser)
#   scripts/fuzz.sh gguf 300       # the GGUF reader: header, metadata, tensor directory, every
#                                  # tensor dequantized (seeds: Tests/Fixtures/gguf/*.gguf)
#
# The harnesses are in Fuzz/. SwiftPM cannot link a fuzzer into a library target, so the
# sources a harness needs (MoEBasics, plus MoESyntax, MoEIO, MoEIR, MoEPlacement or the lowering)
# are compiled with it into one module by swiftc -sanitize=fuzzer,address, their `import MoE…`
# lines for those modules dropped. The
# binary and the growing corpus live in .build/fuzz/TARGET/; a crash is written there as
# crash-<hash>, and the script prints how to rerun it. Extra arguments go to libFuzzer. The
# seeds that need moec (plan, stats, placement) use $MOEC, else .build/{release,debug}/moec.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
seconds=${2:-60}
case "$target" in
  parser) sources=(Sources/MoEBasics/*.swift Sources/MoESyntax/*.swift Fuzz/ParserFuzzer.swift) ;;
  json) sources=(Sources/MoEBasics/*.swift Fuzz/JSONFuzzer.swift) ;;
  weights) sources=(Sources/MoEBasics/*.swift Sources/MoEIO/*.swift Fuzz/WeightsFuzzer.swift) ;;
  gguf) sources=(Sources/MoEBasics/*.swift Sources/MoEIO/*.swift Fuzz/GGUFFuzzer.swift) ;;
  plan) sources=(Sources/MoEBasics/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift Fuzz/PlanFuzzer.swift) ;;
  ir) sources=(Sources/MoEBasics/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift Fuzz/IRReaderFuzzer.swift) ;;
  stats) sources=(Sources/MoEBasics/*.swift Sources/MoEPlacement/*.swift Fuzz/StatsFuzzer.swift) ;;
  placement) sources=(Sources/MoEBasics/*.swift Sources/MoEPlacement/*.swift Fuzz/PlacementFuzzer.swift) ;;
  config)
    sources=(Sources/MoEBasics/*.swift Sources/MoESyntax/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift
      Sources/MoECompiler/Lowering/*.swift Sources/MoECompiler/Lowering/Builtins/*.swift Fuzz/ConfigFuzzer.swift) ;;
  source)
    sources=(Sources/MoEBasics/*.swift Sources/MoESyntax/*.swift Sources/MoEIR/*.swift Sources/MoEIR/Ops/*.swift
      Sources/MoECompiler/Lowering/*.swift Sources/MoECompiler/Lowering/Builtins/*.swift Sources/MoEPasses/*.swift
      Sources/MoECompiler/Pipeline.swift Fuzz/SourceFuzzer.swift) ;;
  *) echo "usage: scripts/fuzz.sh parser|json|weights|gguf|plan|ir|stats|placement|config|source SECONDS [libFuzzer options]" >&2; exit 2 ;;
esac
shift $(( $# > 2 ? 2 : $# ))

work=.build/fuzz/$target
mkdir -p "$work/src" "$work/corpus" "$work/seeds"
rm -f "$work"/src/*.swift
for f in "${sources[@]}"; do
  sed -E '/^import MoE(Basics|Syntax|IR|Passes|Placement)$/d' "$f" > "$work/src/$(basename "$f")"
done

echo "== building $work/fuzzer"
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name MoEFuzz \
  "$work"/src/*.swift -o "$work/fuzzer"

if [ "$target" = parser ] || [ "$target" = source ]; then
  find graphs Tests/MoESyntaxTests/Diagnostics -name '*.moe' -exec cp {} "$work/seeds/" \;
elif [ "$target" = weights ]; then
  # The first byte picks the reader: 0 safetensors, 1 .npy. Small files only (-max_len).
  for f in Tests/Fixtures/*/model.safetensors examples/*/*.npy Tests/Fixtures/*/x.npy; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 65536 ] || continue
    case "$f" in *.npy) b='\001' ;; *) b='\000' ;; esac
    { printf "$b"; cat "$f"; } > "$work/seeds/$(echo "$f" | tr / _)"
  done
elif [ "$target" = gguf ]; then
  cp Tests/Fixtures/gguf/*.gguf "$work/seeds/"
elif [ "$target" = plan ]; then
  moec=${MOEC:-$(ls .build/release/moec .build/debug/moec 2>/dev/null | head -n 1 || true)}
  if [ -z "$moec" ]; then swift build --product moec; moec=.build/debug/moec; fi
  # Each tiny fixture with its graph (graphs/MODEL_TYPE.moe), and the examples.
  for d in Tests/Fixtures/*-tiny examples/mixtral-tiny; do
    name=$(basename "$d"); g=graphs/${name%-tiny}.moe
    [ -f "$g" ] || continue
    "$moec" compile "$g" --model "$d" -o "$work/seeds/$name.plan.json" >/dev/null 2>&1 || echo "(no seed from $d)"
  done
elif [ "$target" = stats ] || [ "$target" = placement ]; then
  moec=${MOEC:-$(ls .build/release/moec .build/debug/moec 2>/dev/null | head -n 1 || true)}
  if [ -z "$moec" ]; then swift build --product moec; moec=.build/debug/moec; fi
  # Statistics files in the repo, and the statistics moec writes for each tiny fixture.
  find Tests examples -name '*stats*.json' -size -64k | while read -r f; do cp "$f" "$work/seeds/$(echo "$f" | tr / _)"; done
  for d in Tests/Fixtures/*-tiny examples/mixtral-tiny; do
    name=$(basename "$d"); g=graphs/${name%-tiny}.moe
    [ -f "$g" ] && [ -f "$d/x.npy" ] || continue
    "$moec" run "$g" --model "$d" --input "x=$d/x.npy" --stats "$work/seeds/$name.stats.json" >/dev/null 2>&1 || true
  done
  for f in "$work"/seeds/*.json; do
    [ -f "$f" ] || continue
    if [ "$target" = placement ]; then
      # Placements (and whole plans) moec place writes from each statistics file.
      for w in 1 2 4; do
        "$moec" place --load "$f" --workers "$w" --replicas "$(( w * 8 ))" -o "${f%.json}.w$w.placement" >/dev/null 2>&1 || true
      done
      rm -f "$f"
    else
      # Four option bytes before the file: workers, replicas, nodes/groups/policy, memory.
      { printf '\001\001\000\000'; cat "$f"; } > "$f.seed" && rm -f "$f"
    fi
  done
elif [ "$target" = config ]; then
  mkdir -p "$work/graphs"
  cp graphs/*.moe "$work/graphs/"
  n=$(ls "$work"/graphs/*.moe | wc -l)
  i=0
  for f in examples/*/config.json Tests/Fixtures/*/config.json; do
    [ -f "$f" ] || continue
    # The graph byte: the fixture's own graph (graphs/FAMILY.moe) when there is one.
    g=$(basename "$(dirname "$f")"); g=${g%-tiny}
    k=$(ls "$work"/graphs/*.moe | LC_ALL=C sort | grep -n "/$g.moe\$" | cut -d: -f1 || true)
    b=$(( ${k:-$(( i % n + 1 ))} - 1 ))
    { printf "\\$(printf %03o "$b")"; cat "$f"; } > "$work/seeds/seed$((i++)).json"
  done
elif [ "$target" = ir ]; then
  find Tests -name '*.ir' | while read -r f; do cp "$f" "$work/seeds/$(echo "$f" | tr / _)"; done
else
  i=0
  for f in examples/*/config.json Tests/Fixtures/*/config.json Tests/Fixtures/*/*.index.json; do
    [ -f "$f" ] && cp "$f" "$work/seeds/seed$((i++)).json"
  done
fi

# The config target keeps the parsed graphs for the whole run; Swift stores the pointers of
# enum payloads with tag bits, which LeakSanitizer does not recognise, so it would report the
# trees as leaked. Leaks are not what it looks for.
options=()
if [ "$target" = config ]; then
  options+=(-detect_leaks=0)
  export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
fi

# The committed corpus: a tarball per target (inputs named by their SHA-1), unpacked here.
archive=$PWD/Fuzz/corpus/$target.tar.gz
rm -rf "$work/committed" && mkdir -p "$work/committed"
[ -f "$archive" ] && tar -xzf "$archive" -C "$work/committed"
cd "$work"
if [ "$seconds" = merge ]; then
  # Seeds first, so that only what they do not reach is kept; inputs of at most 16 KiB, so the
  # committed corpus stays small; then the seeds are taken out again (CI makes them).
  rm -rf merged && mkdir merged && cp seeds/* merged/ 2>/dev/null || true
  ./fuzzer -merge=1 -max_len=16384 -timeout=20 -rss_limit_mb=4096 ${options[@]+"${options[@]}"} "$@" merged committed corpus
  for f in merged/*; do [ -f "seeds/$(basename "$f")" ] && rm -f "$f"; done
  mkdir -p "$(dirname "$archive")"
  (cd merged && find . -type f -printf '%P\n' | LC_ALL=C sort | tar --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - -T - | gzip -n -9 > "$archive")
  echo "== $archive: $(ls merged | wc -l) inputs, $(stat -c %s "$archive") bytes"
  exit 0
fi
echo "== fuzzing $target for $seconds s (corpus $work/corpus, committed $archive, seeds $work/seeds)"
./fuzzer -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
  -print_final_stats=1 ${options[@]+"${options[@]}"} "$@" corpus committed seeds

#!/usr/bin/env bash
# Builds the libFuzzer targets of every layer's fuzz/ directory (src/*/fuzz) with clang in
# their own build dir and runs each for FUZZ_SECONDS (docs/fuzzing.md). The targets are
# those the build declares (ember_fuzz_targets(), listed in $FUZZ_BUILD/fuzz_targets.tsv
# with their executable, fuzz directory and dictionary): nothing to edit here when a
# layer adds targets. Exits non-zero if any target finds a crash, a leak, a broken
# invariant, an allocation above the limit or a hang; the reproducer is left in
# $FUZZ_BUILD/fuzz-artifacts/<target>/ and its log in $FUZZ_BUILD/fuzz-<target>.log.
#
#   FUZZ_SECONDS=60        seconds per target (the targets run in parallel)
#   FUZZ_TARGETS="..."     subset of the target names (default: all; `FUZZ_LIST=1` lists them)
#   FUZZ_BUILD=build-fuzz  build dir (configured with clang++ and EMBER_FUZZ=ON)
#   FUZZ_MALLOC_LIMIT_MB=4 largest single allocation allowed; inputs are at most 64 KiB, so
#                          anything bigger was sized by a length the input claimed
#   FUZZ_ARGS="..."        extra libFuzzer flags, e.g. "-jobs=4 -workers=4"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-build-fuzz}
manifest="$build/fuzz_targets.tsv"

# Configure every time (cheap once configured) so targets a layer added are listed.
generator=()
[ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_FUZZ=ON -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_BENCH=OFF >/dev/null

# name -> executable, fuzz directory, dictionary ("-" for none)
declare -A exe dir dict
all=()
while IFS=$'\t' read -r name path fuzz_dir dictionary; do
  [ -n "$name" ] || continue
  exe[$name]=$path dir[$name]=$fuzz_dir dict[$name]=$dictionary
  all+=("$name")
done <"$manifest"
if [ -n "${FUZZ_LIST:-}" ]; then
  for t in "${all[@]}"; do echo "$t ${dir[$t]#"$PWD/"}"; done
  exit 0
fi
targets=${FUZZ_TARGETS:-"${all[*]}"}
build_targets=()
for t in $targets; do
  if [ -z "${exe[$t]:-}" ]; then
    echo "fuzz: no target '$t'; the build declares: ${all[*]}" >&2
    exit 2
  fi
  build_targets+=("fuzz_$t")
done
cmake --build "$build" -j"${JOBS:-$(nproc)}" --target "${build_targets[@]}"

symbolizer=$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | head -1 || true)
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH="$symbolizer"
# A small quarantine keeps RSS well under -rss_limit_mb (the default 256 MiB alone fills half).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=32}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Per target: a work corpus under the build dir (libFuzzer adds to the first directory),
# seeded read-only from the checked-in corpus and regressions of its fuzz directory.
declare -A pids
for t in $targets; do
  work="$build/fuzz-corpus/$t" artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$work" "$artifacts"
  seeds=("${dir[$t]}/corpus/$t")
  [ -d "${dir[$t]}/regressions/$t" ] && seeds+=("${dir[$t]}/regressions/$t")
  dict_flag=()
  [ "${dict[$t]}" != "-" ] && dict_flag=(-dict="${dict[$t]}")
  # shellcheck disable=SC2086
  "${exe[$t]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=512 \
    -malloc_limit_mb="${FUZZ_MALLOC_LIMIT_MB:-4}" -max_len=65536 "${dict_flag[@]}" -artifact_prefix="$artifacts/" \
    -print_final_stats=1 ${FUZZ_ARGS:-} "$work" "${seeds[@]}" >"$build/fuzz-$t.log" 2>&1 &
  pids[$t]=$!
done

failed=()
for t in $targets; do
  if wait "${pids[$t]}"; then status=ok; else status=FAILED; failed+=("$t"); fi
  log="$build/fuzz-$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "fuzz: $t $status: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?} in ${seconds}s ($log)"
done
if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "---- fuzz_$t ($build/fuzz-$t.log) ----"
    grep -m1 -B2 -A40 -E 'ERROR: |fuzz invariant broken|==[0-9]+==|SUMMARY' "$build/fuzz-$t.log" || tail -40 "$build/fuzz-$t.log"
    ls "$build/fuzz-artifacts/$t/"
    echo "replay: ${exe[$t]} -malloc_limit_mb=${FUZZ_MALLOC_LIMIT_MB:-4} $build/fuzz-artifacts/$t/<file>"
  done
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a finding"

#!/usr/bin/env bash
# The server, the CLI, the analyzers and RecordStream built with clang (no LibTorch, no dashboard):
#  1. under AddressSanitizer and UndefinedBehaviorSanitizer: their unit and end-to-end tests, every
#     committed fuzz input, then each libFuzzer target fuzzed for a bounded time;
#  2. under ThreadSanitizer: the concurrency tests (RecordStream and the ingest client against the
#     real server, the background worker threads, the Store's concurrent writers and readers,
#     concurrent HTTP clients, a server stopped by SIGTERM and SIGINT).
#   scripts/sanitize.sh                 the whole stage (scripts/test.sh runs it)
#   LOSSGUARD_FUZZ_SECONDS=300 ...      fuzz longer (default 20 s per target)
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${LOSSGUARD_SANITIZE_BUILD_DIR:-build-sanitize}
fuzz_seconds=${LOSSGUARD_FUZZ_SECONDS:-20}
# -O1 with line tables only: what the sanitizers' reports need (file:line in every frame), and the
# usual level for sanitizer builds.
# Unity builds (several sources a compiler run): the headers (Beast, Asio, nlohmann, gtest) are
# parsed once per group instead of once per file; the ASan build took 4.9 min so on a 2-core machine.
sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG")
CC=clang CXX=clang++ cmake -S . -B "$build_dir" "${sanitizer_flags[@]}" -DCMAKE_UNITY_BUILD=ON \
  -DLOSSGUARD_SANITIZE=address -DLOSSGUARD_FUZZ=ON -DLOSSGUARD_BUILD_COLLECTOR=OFF \
  -DLOSSGUARD_BUILD_WEB=OFF -DLOSSGUARD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)"

# halt_on_error: the first report fails the test. detect_leaks stays on (LeakSanitizer).
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j 2 -L 'unit|e2e'

artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"
for target in fuzz_record_codec fuzz_http_request fuzz_config fuzz_hf_import; do
  # New inputs go to a scratch corpus; the committed one is only read. A crash leaves its input in
  # $artifacts: add it under tests/fuzz/regressions/$target/ once fixed.
  scratch=$(mktemp -d)
  echo "fuzzing $target for ${fuzz_seconds}s"
  "$build_dir/tests/fuzz/$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
    "$scratch" "tests/fuzz/corpus/$target" "tests/fuzz/regressions/$target" 2>"$artifacts/$target.log" ||
    { tail -50 "$artifacts/$target.log"; rm -rf "$scratch"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$artifacts/$target.log" | tr '\n' ' '
  echo
  rm -rf "$scratch"
done
tsan_dir=${LOSSGUARD_TSAN_BUILD_DIR:-build-tsan}
echo "== ThreadSanitizer build ($(date -u +%H:%M:%S))"
# Each file on its own here (about 1.5 minutes more than a unity build): the one build of CI that
# shows a missing #include in the server, the CLI, the analyzers or the tests, which the unity
# builds hide.
CC=clang CXX=clang++ cmake -S . -B "$tsan_dir" "${sanitizer_flags[@]}" -DCMAKE_UNITY_BUILD=OFF \
  -DLOSSGUARD_SANITIZE=thread -DLOSSGUARD_BUILD_COLLECTOR=OFF -DLOSSGUARD_BUILD_WEB=OFF \
  -DLOSSGUARD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$tsan_dir" -j "$(nproc)" --target lossguard-server stream_test server_test server_e2e_test
# halt_on_error: a race report fails the test (in a server the tests started, it ends the server,
# and the test with it). second_deadlock_stack: both stacks of a lock-order report.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
ctest --test-dir "$tsan_dir" --output-on-failure --timeout 600 -j 2 \
  -R '^(RecordStream|IngestClient|WorkerThread|OrderedConsumer)\.|^Engines/StoreAnalysisTest\.|^Engines/StoreTest\.Concurrent|^PostgresStore\.TwoStores|^HttpApi\.(Concurrent|ManyRequests)|^Reliability\.(ReadsAreAnswered|BeyondMaxConnections)|^Notifications\.EveryEpisode|^RunLifecycle\.Retention|^Shutdown\.'
echo "sanitize: passed"

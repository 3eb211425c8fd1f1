#!/usr/bin/env bash
# Reliability checks (docs/reliability.md): linearizability, differential fuzzing,
# hostile inputs, AddressSanitizer (with LeakSanitizer), ThreadSanitizer, Miri,
# valgrind.
#
#   .ci/reliability.sh [fast|heavy|all]      (default: all; or RELIABILITY_TIER)
#
# fast  — linearizability histories, time-boxed fuzzing, the 10M-key test: stable
#         toolchain, reuses the debug build of `cargo test` (only this crate is
#         rebuilt, at opt-level 3), a few minutes.
# heavy — ASan (+LSan), LSan, TSan (-Zbuild-std), Miri, valgrind memcheck: each
#         nightly tool builds the dev-dependencies once in its own target dir
#         under target/reliability/. Miri, which interprets on one core,
#         runs in a background lane beside the others; its lines follow at
#         the end.
#
# Knobs: READMOSTLY_LIN_HISTORIES (histories per map, default 5000),
# READMOSTLY_FUZZ_SECS (seconds per fuzz target, default 120), RELIABILITY_SKIP
# (space-separated step names to skip; unset: "lsan lsan-lib", the standalone
# LeakSanitizer run; set it to "" to run every step).
#
# Every step prints its wall time; a failing step prints the end of its log and
# the script exits non-zero. A tool that cannot be installed on this machine
# (Miri, rust-src, valgrind) is reported in one line and skipped; the rest runs.
set -euo pipefail
cd "$(dirname "$0")/.."

tier=${1:-${RELIABILITY_TIER:-all}}
case $tier in fast | heavy | all) ;; *)
    echo "usage: $0 [fast|heavy|all]" >&2
    exit 2
    ;;
esac

export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
export READMOSTLY_LIN_HISTORIES=${READMOSTLY_LIN_HISTORIES:-5000}
export READMOSTLY_FUZZ_SECS=${READMOSTLY_FUZZ_SECS:-120}
# Unset, it skips the standalone LeakSanitizer run (ASan runs LeakSanitizer).
skip=" ${RELIABILITY_SKIP-lsan lsan-lib} "
skip_why=${RELIABILITY_SKIP+RELIABILITY_SKIP}
skip_why=${skip_why:-"by default (ASan runs LeakSanitizer; RELIABILITY_SKIP= runs it)"}
host=x86_64-unknown-linux-gnu
root=target/reliability
logs=$root/logs
mkdir -p "$logs"
started=$(date +%s)
summary=()
skipped=()
passed_total=0

# The stable debug build of this crate, with the crate itself (and its tests)
# optimized: the long-running fast-tier tests get release-like speed without
# rebuilding the dev-dependencies in release mode.
opt=(--config 'profile.test.package.readmostly.opt-level=3')

# step NAME COMMAND...: runs COMMAND with its output in $logs/NAME.log, prints the
# lines worth keeping, its test counts and its wall time; fails loudly.
step() {
    local name=$1
    shift
    if [[ $skip == *" $name "* ]]; then
        echo "::: reliability/$name: skipped ($skip_why)"
        skipped+=("$name: $skip_why")
        return
    fi
    local log=$logs/$name.log t0 rc=0
    echo "::: reliability/$name: $*"
    t0=$(date +%s)
    "$@" >"$log" 2>&1 || rc=$?
    local secs=$(($(date +%s) - t0))
    # Figures the tests print, and sanitizer / valgrind / Miri verdicts.
    {
        grep -oE '(linearizability|fuzz) [^:]+: .*' "$log" || true
        grep -E '^==[0-9]+== (ERROR|ERROR SUMMARY|WARNING)|^WARNING: ThreadSanitizer|^SUMMARY: |^error: Undefined Behavior' "$log" || true
    } | sort | uniq -c | awk '{ n = $1; $1 = ""; sub(/^ /, ""); print "    " (n > 1 ? "(" n "x) " : "") $0 }'
    local passed failed
    passed=$({ grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" || true; } | awk '{s += $4} END {print s + 0}')
    failed=$({ grep -oE '[0-9]+ failed;' "$log" || true; } | awk '{s += $1} END {print s + 0}')
    if [[ $rc -ne 0 ]]; then
        echo "----- last 150 lines of $log -----" >&2
        tail -n 150 "$log" >&2
        echo "FAILED: reliability/$name (exit $rc after ${secs}s; $passed passed, $failed failed; full log: $log)" >&2
        exit 1
    fi
    passed_total=$((passed_total + passed))
    summary+=("$(printf '%-20s %5ss  %4s tests passed' "$name" "$secs" "$passed")")
    echo "::: reliability/$name: ok in ${secs}s ($passed tests passed)"
}

# Nightly toolchain and components, added if missing; says so and returns 1 if
# they cannot be had here.
nightly_with() {
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
            echo "::: reliability: the nightly toolchain cannot be installed on this machine (rustup toolchain install nightly failed)"
            return 1
        }
    fi
    local component
    for component in "$@"; do
        if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q "^$component"; then
            rustup component add "$component" --toolchain nightly >/dev/null 2>&1 || {
                echo "::: reliability: 'rustup component add $component --toolchain nightly' failed on this machine"
                return 1
            }
        fi
    done
}

skip_tool() {
    local name=$1 why=$2
    echo "::: reliability/$name: SKIPPED — $why"
    skipped+=("$name: $why")
}

# Lanes: a sequence of steps run in the background beside the others, for
# a tool that keeps one core busy (Miri interprets on one thread) while the
# sanitizers' builds and tests and valgrind use the other. A lane's lines go to
# $logs/lane-NAME.out and are replayed when it ends; a failing lane fails the
# script then, and a failing script stops its lanes.
declare -A lane_pids=()

# lane_start NAME FUNCTION [ARG...]: runs FUNCTION's steps in the background.
lane_start() {
    local name=$1 fn=$2
    shift 2
    echo "::: reliability: lane $name started beside the next steps (its lines follow when it ends)"
    (
        summary=() skipped=() passed_total=0
        "$fn" "$@"
        printf '%s\n' "${summary[@]}" "${skipped[@]/#/SKIPPED }" >"$logs/lane-$name.summary"
        echo "$passed_total" >"$logs/lane-$name.passed"
    ) >"$logs/lane-$name.out" 2>&1 &
    lane_pids[$name]=$!
}

# lane_wait NAME: waits for the lane, replays its lines and adds its counts.
lane_wait() {
    local name=$1 rc=0 t0 line
    t0=$(date +%s)
    wait "${lane_pids[$name]}" || rc=$?
    unset "lane_pids[$name]"
    cat "$logs/lane-$name.out"
    if [[ $rc -ne 0 ]]; then
        echo "FAILED: reliability lane $name (exit $rc; its lines above)" >&2
        exit 1
    fi
    echo "::: reliability: lane $name done ($(($(date +%s) - t0))s spent waiting for it)"
    while IFS= read -r line; do
        case $line in
        "") ;;
        "SKIPPED "*) skipped+=("${line#SKIPPED }") ;;
        *) summary+=("$line") ;;
        esac
    done <"$logs/lane-$name.summary"
    passed_total=$((passed_total + $(cat "$logs/lane-$name.passed")))
}

# kill_tree PID: PID and every process under it (cargo's children included).
kill_tree() {
    local child
    if command -v pgrep >/dev/null 2>&1; then
        for child in $(pgrep -P "$1" 2>/dev/null); do
            kill_tree "$child"
        done
    fi
    kill "$1" 2>/dev/null || true
}
stop_lanes() {
    local pid
    for pid in "${lane_pids[@]}"; do
        kill_tree "$pid"
    done
}
trap stop_lanes EXIT

# ----------------------------------------------------------------------------
# Fast tier.
# ----------------------------------------------------------------------------
fast_tier() {
    local t0
    t0=$(date +%s)
    echo "::: reliability: fast tier (stable)"
    # `--features seize`: the linearizability histories include the maps on
    # seize (both backends built; the default stays crossbeam-epoch).
    step build-opt cargo test --locked "${opt[@]}" --features seize --no-run \
        --test linearizability --test fuzz_differential --test hostile
    # One test at a time: the 4-8 threads of a history get the cores to themselves.
    step linearizability cargo test --locked "${opt[@]}" --features seize \
        --test linearizability -- --nocapture --test-threads=1
    # The three fuzz targets side by side, each for READMOSTLY_FUZZ_SECS.
    step fuzz cargo test --locked "${opt[@]}" --features seize --test fuzz_differential -- \
        --nocapture --test-threads=3
    # ...and on seize alone (then `DefaultReclaim`), for a quarter as long.
    step fuzz-seize env READMOSTLY_FUZZ_SECS=$((READMOSTLY_FUZZ_SECS / 4)) \
        cargo test --locked "${opt[@]}" --no-default-features --features seize \
        --test fuzz_differential -- --nocapture --test-threads=3
    step hostile-10m cargo test --locked "${opt[@]}" --features seize --test hostile -- \
        --include-ignored --nocapture
    echo "::: reliability: fast tier done in $(($(date +%s) - t0))s"
}

# ----------------------------------------------------------------------------
# Heavy tier.
# ----------------------------------------------------------------------------

# Integration targets under the memory sanitizers (the stress, drop-counting and
# differential ones, plus this suite's own).
memory_targets=(--test stress --test drop_counting --test fuzz_differential
    --test linearizability --test hostile)

# sanitize NAME FLAG [VAR=VALUE...]: the memory targets, then the crate's own
# differential unit tests (SyncMap, ClassicSyncMap, SnapshotMap against HashMap),
# built with -Zsanitizer=FLAG in their own target dir.
sanitize() {
    local name=$1 flag=$2
    shift 2
    # AddressSanitizer catches a use after free only if the memory was freed:
    # `readmostly_fresh_cells` stops the maps keeping freed value cells for reuse.
    local rustflags="-Zsanitizer=$flag"
    [[ $flag == address ]] && rustflags+=" --cfg readmostly_fresh_cells"
    local build=(env -u READMOSTLY_FUZZ_SECS "$@" CARGO_TARGET_DIR="$root/$name"
        RUSTFLAGS="$rustflags")
    # Under a sanitizer the fixed default fuzz case count is enough (no time box)
    # and 200 histories per map.
    step "$name" "${build[@]}" READMOSTLY_LIN_HISTORIES=200 \
        cargo +nightly test --locked --target "$host" "${memory_targets[@]}"
    step "$name-lib" "${build[@]}" cargo +nightly test --locked --target "$host" --lib -- differential
}

# Miri: Tree Borrows (crossbeam-epoch 0.9 fails Stacked Borrows in its own
# code); leaks ignored (epoch garbage pending at exit; the drop tests check it
# instead); isolation off so the fuzz corpus can be read. Tests scale
# themselves down under cfg(miri).
miri_steps() {
    local miri=(env -u READMOSTLY_FUZZ_SECS -u READMOSTLY_LIN_HISTORIES
        CARGO_TARGET_DIR="$root/miri"
        MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-disable-isolation")
    step miri-setup "${miri[@]}" cargo +nightly miri setup
    step miri "${miri[@]}" cargo +nightly miri test --locked \
        --test hostile --test fuzz_differential --test linearizability
    # The single-threaded drop-counting tests (the others are too slow).
    step miri-drop "${miri[@]}" cargo +nightly miri test --locked --test drop_counting -- \
        overwrite_drops remove_drops clear_drops retain_drops dropping_a_map zero_sized
    # Inline values stay valid under a guard after their table is replaced and
    # freed; the ledger's shards, holds and sweeps (threads included).
    step miri-inline "${miri[@]}" cargo +nightly miri test --locked --lib -- \
        inline_values_outlive reclaim::retired
    # The seize backend: its own tests, the hostile inputs and the
    # linearizability histories (threads retiring and reclaiming), and the
    # single-threaded drop counts. Not the differential fuzz cases: they
    # run single-threaded sequences whose reclamation ASan checks on seize
    # (`asan-seize`, fresh cells), and under Miri on crossbeam-epoch above;
    # under Miri on seize they took almost 3 of this step's 10 minutes.
    step miri-seize "${miri[@]}" cargo +nightly miri test --locked \
        --no-default-features --features seize --test seize_backend \
        --test hostile --test linearizability
    step miri-seize-drop "${miri[@]}" cargo +nightly miri test --locked \
        --no-default-features --features seize --test drop_counting -- \
        overwrite_drops remove_drops dropping_a_map
}

# valgrind memcheck on the stable debug test binaries.
valgrind_steps() {
    if ! command -v valgrind >/dev/null 2>&1; then
        { apt-get update -qq && apt-get install -y -qq valgrind; } >"$logs/valgrind-install.log" 2>&1 || true
    fi
    if command -v valgrind >/dev/null 2>&1; then
        # test_binaries LOG CARGO_ARGS...: builds the test targets CARGO_ARGS name
        # (debug, stable) with cargo's output in LOG; fails loudly.
        test_binaries() {
            local log=$1
            shift
            cargo test --locked --no-run "$@" >"$log" 2>&1 || {
                tail -n 50 "$log" >&2
                echo "FAILED: reliability/valgrind build ($*)" >&2
                exit 1
            }
        }
        # test_binary LOG TARGET: the path of TARGET's test binary in LOG.
        test_binary() {
            local bin
            bin=$(sed -n "s|^ *Executable src/tests/$2.rs (\(.*\))$|\1|p" "$1")
            [[ -n $bin ]] || {
                echo "FAILED: no test binary for $2 in $1" >&2
                exit 1
            }
            echo "$bin"
        }
        local build=$logs/valgrind-build.log
        test_binaries "$build" --test stress --test drop_counting --test fuzz_differential \
            --test hostile
        local vg=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
            --show-leak-kinds=definite --error-exitcode=1 --fair-sched=yes -q)
        local target bin
        for target in drop_counting fuzz_differential hostile stress; do
            bin=$(test_binary "$build" "$target")
            # The stress tests' 8 threads run one at a time under valgrind: a
            # tenth of their rounds (the same checks; ASan and TSan run them
            # whole) keeps the step to minutes.
            step "valgrind-$target" env -u READMOSTLY_FUZZ_SECS READMOSTLY_STRESS_PERCENT=10 \
                "${vg[@]}" "$bin"
        done
        # The seize backend's own target, in a build with seize alone.
        local build_seize=$logs/valgrind-build-seize.log
        test_binaries "$build_seize" --no-default-features --features seize --test seize_backend
        bin=$(test_binary "$build_seize" seize_backend)
        step valgrind-seize "${vg[@]}" "$bin"
    else
        skip_tool valgrind "valgrind is not installed and apt-get could not install it"
    fi
}

heavy_tier() {
    local t0
    t0=$(date +%s)
    echo "::: reliability: heavy tier (nightly sanitizers, Miri, valgrind)"
    local have_nightly=1
    nightly_with || have_nightly=0

    # Miri first, in a lane of its own: it interprets on one thread and is
    # the longest tool here, so it runs beside the sanitizers and valgrind
    # (which runs threads one at a time), not after them.
    local have_miri=1
    if [[ $have_nightly == 0 ]] || ! nightly_with miri rust-src; then
        have_miri=0
        skip_tool miri "'rustup component add miri rust-src --toolchain nightly' is not possible on this machine"
    fi
    if [[ $have_miri == 1 ]]; then
        lane_start miri miri_steps
    fi

    if [[ $have_nightly == 1 ]]; then
        # AddressSanitizer, with its LeakSanitizer on (the default on Linux).
        sanitize asan address ASAN_OPTIONS=detect_leaks=1
        # LeakSanitizer alone (no ASan shadow memory): the same leak checks
        # ASan's LeakSanitizer makes above, so skipped unless RELIABILITY_SKIP
        # is set without it.
        sanitize lsan leak
        # The same memory targets on the seize backend alone (then its
        # `DefaultReclaim`), plus the tests that name `Seize` explicitly.
        # It shares asan's target directory (same RUSTFLAGS): the
        # dev-dependencies are built once.
        step asan-seize env -u READMOSTLY_FUZZ_SECS ASAN_OPTIONS=detect_leaks=1 \
            READMOSTLY_LIN_HISTORIES=200 CARGO_TARGET_DIR="$root/asan" \
            RUSTFLAGS="-Zsanitizer=address --cfg readmostly_fresh_cells" \
            cargo +nightly test --locked --target "$host" \
            --no-default-features --features seize "${memory_targets[@]}" --test seize_backend
    else
        skip_tool asan "no nightly toolchain"
        skip_tool lsan "no nightly toolchain"
    fi

    # ThreadSanitizer needs std rebuilt with it (-Zbuild-std, so rust-src):
    # without it, crossbeam-utils fails to link (ABI mismatch) and std's
    # uninstrumented Arc shows up as false races. No suppressions on
    # crossbeam-epoch.
    if [[ $have_nightly == 1 ]] && nightly_with rust-src; then
        # Both backends' runs share one target directory, so std and the
        # dev-dependencies are built once: `--cfg readmostly_tsan` touches
        # only the seize backend (below). The stress tests run half their
        # rounds under TSan (same checks; the native run does them whole).
        local tsan_env=(env -u READMOSTLY_FUZZ_SECS READMOSTLY_LIN_HISTORIES=200
            READMOSTLY_STRESS_PERCENT=50 CARGO_TARGET_DIR="$root/tsan"
            RUSTFLAGS="-Zsanitizer=thread --cfg readmostly_tsan")
        step tsan "${tsan_env[@]}" \
            TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
            cargo +nightly test --locked -Zbuild-std --target "$host" \
            --test stress --test drop_counting --test linearizability
        # The seize backend. seize orders frees through `membarrier` and
        # standalone fences, which TSan does not model: `--cfg readmostly_tsan`
        # tells TSan what seize guarantees (src/reclaim/seize.rs, `mod tsan`),
        # and .ci/tsan-seize.supp silences races on seize's own records only.
        local tsan_seize=("${tsan_env[@]}"
            TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/.ci/tsan-seize.supp"
            cargo +nightly test --locked -Zbuild-std --target "$host"
            --no-default-features --features seize)
        step tsan-seize "${tsan_seize[@]}" \
            --test stress --test drop_counting --test linearizability --test seize_backend
        # ...and that it still reports a free without a grace period.
        tsan_seize_mutant() {
            local log="$logs/tsan-seize-mutant.log"
            if READMOSTLY_TSAN_MUTANT=1 "${tsan_seize[@]}" --test drop_counting >"$log" 2>&1; then
                echo "the mutant without a grace period passed under TSan" >&2
                return 1
            fi
            grep -q "ThreadSanitizer: heap-use-after-free\|ThreadSanitizer: data race" "$log" || {
                tail -n 30 "$log" >&2
                echo "the mutant failed, but not by a TSan report" >&2
                return 1
            }
        }
        step tsan-seize-mutant tsan_seize_mutant
    else
        skip_tool tsan "needs the nightly toolchain with rust-src"
    fi

    valgrind_steps
    if [[ $have_miri == 1 ]]; then
        lane_wait miri
    fi
    echo "::: reliability: heavy tier done in $(($(date +%s) - t0))s"
}

case $tier in
fast) fast_tier ;;
heavy) heavy_tier ;;
all)
    fast_tier
    heavy_tier
    ;;
esac

echo "::: reliability: summary ($tier tier, $(($(date +%s) - started))s)"
for line in "${summary[@]}"; do
    echo "    $line"
done
for line in "${skipped[@]}"; do
    echo "    SKIPPED $line"
done
echo "reliability: $passed_total passed, 0 failed"

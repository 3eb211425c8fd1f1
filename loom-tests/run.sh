#!/usr/bin/env bash
# The loom suite: every model on both maps and both reclamation backends, then
# every mutant against the model that must catch it. Prints each model's bound,
# executions and time; fails if a model fails or a mutant survives.
#
#   loom-tests/run.sh            # everything (CI calls this)
#   loom-tests/run.sh suite      # the models only
#   loom-tests/run.sh mutants    # the mutants only
#
# LOOM_MAX_PREEMPTIONS overrides every model's bound. Builds go to
# loom-tests/target/{suite,mutant}: each RUSTFLAGS set rebuilds all dependencies.
set -euo pipefail
cd "$(dirname "$0")"

what=${1:-all}
export CARGO_TERM_COLOR=never
start=$(date +%s)
mkdir -p target

# The models (tests/sync_map.rs, tests/snapshot_map.rs): loom's primitives in
# readmostly (`loom`) and in crossbeam-epoch (`crossbeam_loom`), so both
# reclamation backends run.
suite() {
    echo "::: loom suite (RUSTFLAGS=--cfg loom --cfg crossbeam_loom)"
    local t0=$(date +%s)
    local status=0
    RUSTFLAGS="--cfg loom --cfg crossbeam_loom" \
        cargo test --locked --release --target-dir target/suite --test sync_map --test snapshot_map \
        -- --nocapture --test-threads="${LOOM_TEST_THREADS:-2}" >target/suite.log 2>&1 || status=$?
    grep -oE 'loom-model .*|^test result.*|thread .* panicked.*|Causality.*|.*leaked.*' \
        target/suite.log || true
    if [ "$status" != 0 ] || ! grep -q '^test result: ok' target/suite.log; then
        tail -n 40 target/suite.log >&2
        echo "FAILED: loom suite (log: loom-tests/target/suite.log)" >&2
        exit 1
    fi
    echo "::: loom suite: ok in $(( $(date +%s) - t0 ))s"
}

# Each mutant (see MUTANTS in src/reclaim/loom.rs) with the model that must find
# it and what the failure must say.
MUTANTS=(
    "slot_cas_failure_relaxed|compare_exchange_race::v3::loom|Causality violation"
    "promote_skips_seal|write_vs_seal::v3::loom|key 1|key 4|iteration"
    "revive_ignores_seal|revive_vs_promotion::v3::loom|key 1|iteration"
    "observer_skips_touch|observed_write_stays_visible::v3::loom|a value seen by a CAS"
    "root_publish_relaxed|get_vs_promotion::v3::loom|Causality violation"
    "delta_insert_relaxed|get_vs_promotion::v3::loom|Causality violation"
    "retire_published_root|reclamation::v3::loom|retired|freed"
    "skip_replaced_retire|reclamation::v3::loom|leaked"
    "iter_skips_delta|iteration::v3::loom|Key\\(4\\)|\\[\\(1, 10\\)"
    "grow_drops_node|delta_growth_vs_read::v3::loom|key 2|key 5|leaked"
    "delta_not_closed|new_key_vs_promotion::v3::loom|key 3"
    "delta_insert_skips_winner|get_or_insert_new_key::v3::loom|exactly one stores|iterated twice|key 5"
    "clear_skips_reopen|new_key_vs_clear_of_empty::v3::loom|maximum number of branches"
    "swap_ignores_expunged|revive_vs_promotion::classic::loom|key 1|iteration"
    "load_or_store_blind|get_or_insert_deleted_key::classic::loom|exactly one stores"
    "cas_failure_relaxed|get_or_insert_deleted_key::classic::loom|Causality violation"
    "promote_relaxed|get_vs_promotion::classic::loom|Causality violation"
    "revive_skips_dirty|remove_insert_vs_promotion::classic::loom|key 1|iteration"
    "retire_published_table|reclamation::classic::loom|retired|freed"
    "skip_replaced_retire|reclamation::classic::loom|leaked"
    "iter_skips_promotion|iteration::classic::loom|\\[\\(1, 10\\)"
)

mutants() {
    echo "::: loom mutants (RUSTFLAGS=--cfg loom --cfg loom_mutant)"
    local t0=$(date +%s)
    RUSTFLAGS="--cfg loom --cfg loom_mutant" \
        cargo test --locked --release --target-dir target/mutant --test sync_map --no-run 2>&1 |
        tail -n 2
    local bin
    bin=$(RUSTFLAGS="--cfg loom --cfg loom_mutant" \
        cargo test --locked --release --target-dir target/mutant --test sync_map --no-run \
        --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    if [ ! -x "$bin" ]; then
        echo "FAILED: no mutant test binary" >&2
        exit 1
    fi
    local survived=0
    for row in "${MUTANTS[@]}"; do
        local name=${row%%|*} rest=${row#*|}
        local model=${rest%%|*} expect=${rest#*|}
        local log=target/mutant-${name}.log m0=$(date +%s%N)
        # (A loom failure often aborts the process: a panic while unwinding.)
        if { LOOM_MUTANT=$name RUST_BACKTRACE=0 "$bin" --exact "$model" --nocapture >"$log" 2>&1; } 2>/dev/null; then
            echo "SURVIVED: mutant $name passed $model (log: loom-tests/$log)" >&2
            survived=1
        elif ! grep -Eq "$expect" "$log"; then
            echo "SURVIVED: mutant $name failed $model, but not with /$expect/ (log: loom-tests/$log)" >&2
            survived=1
        else
            local ms=$(( ($(date +%s%N) - m0) / 1000000 ))
            printf 'mutant %-24s caught by %-42s %3d.%02ds  (%s)\n' "$name" "$model" \
                $((ms / 1000)) $((ms % 1000 / 10)) "$(grep -Eo "$expect" "$log" | head -n 1)"
        fi
    done
    if [ "$survived" != 0 ]; then
        exit 1
    fi
    echo "::: loom mutants: all ${#MUTANTS[@]} caught in $(( $(date +%s) - t0 ))s"
}

case $what in
    suite) suite ;;
    mutants) mutants ;;
    all) suite; mutants ;;
    *) echo "usage: $0 [all|suite|mutants]" >&2; exit 2 ;;
esac
echo "::: loom: done in $(( $(date +%s) - start ))s"

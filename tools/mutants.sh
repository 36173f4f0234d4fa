#!/usr/bin/env bash
# Mutation testing (issue 9), run by hand, never in CI: cargo-mutants
# (https://mutants.rs) changes the code that decides who is damaged and what
# repair may do, one small edit at a time (a condition negated, a function
# returning a default, an operator swapped), and runs the tests that cover
# it. A mutant the tests still pass is a place where the code may be wrong
# with nobody noticing. docs/mutants.md holds the latest result.
#
#   tools/mutants.sh                 every group below, one after the other
#   tools/mutants.sh compare probe   only these groups
#   tools/mutants.sh snapshot -- --re verify_with --baseline skip
#                                    extra arguments for cargo mutants
#   MUTANTS_TARGETS="--test it" tools/mutants.sh snapshot
#                                    skip the unit tests (one build less)
#   MUTANTS_FILTERS="check:: own_checks::" tools/mutants.sh compare
#                                    a quick first pass with fewer tests;
#                                    then the survivors alone with all of
#                                    them: -- --re 'compare.rs:130:5:'
#   MUTANTS_TIMEOUT=240              the per-mutant limit (default 300 s)
#
# Groups (a file, and the tests that exercise it):
#   compare   src/check/compare.rs  the digest passes and the exact diff
#   probe     src/check/probe.rs    the lookups as the POS does them
#   verify    src/repair/verify.rs  the verification before the swap
#   snapshot  src/repair/snapshot.rs the snapshot gate (damaged, other columns)
#   apply     src/repair/apply.rs   the backup and the swap
#
# Bounded for a shared 2-core machine: one file per run, one mutant at a
# time, in place (--in-place: no copy of the tree, the dev build in target/
# is reused; do not edit the tree meanwhile — cargo mutants restores each
# file after its mutant), the dev profile (the tests' own), a per-mutant
# test timeout, and only the test modules that exercise the file (the rest of the suite cannot catch more
# than they do, and would multiply the time). Results land in
# mutants.out/<group>/mutants.out/ (git-ignored): outcomes.json, caught.txt,
# missed.txt, timeout.txt, unviable.txt, and a log per mutant; docs/mutants.md
# summarises them. .cargo/mutants.toml excludes the equivalent mutants
# docs/mutants.md names (each with its reason).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked

groups=()
extra=()
while (($#)); do
  if [[ $1 == -- ]]; then
    shift
    extra=("$@")
    break
  fi
  groups+=("$1")
  shift
done
((${#groups[@]})) || groups=(compare probe snapshot verify apply)

# Test filters: the unit tests of the module (cargo test --lib) and the
# integration-test modules of tests/it/ (cargo test --test it) that run it.
for g in "${groups[@]}"; do
  case $g in
    compare)
      file=src/check/compare.rs
      filters=(check:: kinds:: parity:: own_checks:: large:: header:: refused:: without_rowid:: check_property::) ;;
    probe)
      file=src/check/probe.rs
      filters=(check:: kinds:: parity:: own_checks:: diagnose:: refused:: without_rowid:: check_property::) ;;
    verify)
      file=src/repair/verify.rs
      filters=(repair:: repair_more:: repair_ops:: repair_kinds:: repair_rebuild:: repair_in_place::) ;;
    snapshot)
      file=src/repair/snapshot.rs
      filters=(snapshot:: repair_more:: repair:: repair_ops:: preflight:: upgrade::) ;;
    apply)
      file=src/repair/apply.rs
      filters=(repair:: repair_more:: repair_ops:: repair_kinds:: repair_io:: repair_rebuild:: hooks::) ;;
    *)
      echo "tools/mutants.sh: unknown group '$g' (compare, probe, verify, snapshot, apply)" >&2
      exit 2 ;;
  esac
  # MUTANTS_FILTERS replaces the group's filters (a first, quick pass with
  # the fast modules; then --iterate, or --re on the survivors, with all)
  # shellcheck disable=SC2206 # a list of test-name filters
  [[ -n ${MUTANTS_FILTERS:-} ]] && filters=($MUTANTS_FILTERS)
  echo "mutants: $file, tests ${filters[*]}" >&2
  # .cargo/mutants.toml excludes equivalent mutants by name (line and
  # column included): say how many, so that a line moved by an edit shows
  # (docs/mutants.md lists each with its reason)
  all=$(cargo mutants --list --no-config --file "$file" | wc -l)
  kept=$(cargo mutants --list --file "$file" | wc -l)
  echo "mutants: $file: $kept of $all mutants, $((all - kept)) excluded by .cargo/mutants.toml" >&2
  # cargo mutants exits 2 when mutants were missed, 3 on timeouts: the
  # result is in the output folder, so go on with the next group.
  mkdir -p "mutants.out/$g"
  # shellcheck disable=SC2086 # MUTANTS_TARGETS is a list of cargo test flags
  cargo mutants --in-place --file "$file" --timeout "${MUTANTS_TIMEOUT:-300}" \
    --output "mutants.out/$g" "${extra[@]}" \
    -- ${MUTANTS_TARGETS:---lib --test it} -- "${filters[@]}" ||
    echo "mutants: $g: cargo mutants exited $?" >&2
done

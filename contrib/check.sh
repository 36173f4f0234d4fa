#!/usr/bin/env bash
# Validates what contrib/ ships (run by .ci/run after the tests):
#  * the alert rules load (promtool check rules) and their unit tests pass
#    (promtool test rules);
#  * the systemd units are valid (systemd-analyze verify), where
#    systemd-analyze is available.
# The metrics custodian writes are linted by `promtool check metrics` inside
# the test suite (tests/it/fleet.rs), on a real 40-database run.
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "contrib/check.sh: promtool is missing (Debian's prometheus package)" >&2; exit 1; }
(cd prometheus && promtool check rules custodian-rules.yml && promtool test rules custodian-rules.test.yml)
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify --man=no systemd/custodian-nightly.service systemd/custodian-nightly.timer
  echo "systemd units: verified"
else
  echo "systemd-analyze is not available here: the units were not verified"
fi

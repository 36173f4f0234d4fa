#!/bin/sh
# Regenerates docs/check-report.png (the HTML report of `custodian check` on
# the bundled fixture zeroed_index_page.db) and docs/summary-report.png (the
# fleet report of `custodian summary`), rendered by headless Chromium.
# Needs Debian's Chromium:  apt-get update && apt-get install -y chromium
# Run from anywhere:        sh docs/screenshot.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
command -v chromium >/dev/null || { echo "chromium is missing: apt-get update && apt-get install -y chromium" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/fixtures/zeroed_index_page.db" "$work/"
# exit 1 is expected: the fixture is damaged
(cd "$work" && "$root/target/release/custodian" check zeroed_index_page.db --html report.html) || [ $? -eq 1 ]
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1280,1400 \
  --screenshot="$root/docs/check-report.png" "file://$work/report.html" 2>/dev/null
ls -l "$root/docs/check-report.png"

# docs/summary-report.png: `custodian summary` over the reports of six stores
# (copies of bundled fixtures, each store's tills checked with --out-dir).
fleet="$work/fleet"
mkdir -p "$fleet"
i=0
for f in healthy stale_pk_page healthy zeroed_index_page healthy truncated; do
  i=$((i + 1))
  mkdir -p "$fleet/store$i"
  cp "$root/fixtures/$f.db" "$fleet/store$i/pos.db"
  (cd "$fleet" && "$root/target/release/custodian" check "store$i" --quiet \
    --out-dir "reports/store$i" --json "reports/store$i/fleet.json" --html "reports/store$i/fleet.html") || true
done
(cd "$fleet" && "$root/target/release/custodian" summary reports --quiet --html summary.html) || [ $? -eq 1 ]
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1100,520 \
  --screenshot="$root/docs/summary-report.png" "file://$fleet/summary.html" 2>/dev/null
ls -l "$root/docs/summary-report.png"

#!/bin/sh
# Regenerates docs/check-report.png: the HTML report of `custodian check` on
# the bundled fixture zeroed_index_page.db, rendered by headless Chromium.
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

#!/usr/bin/env bash
# The web client's checks: its type check (tsc --checkJs over web/js) and the browser tests
# (headless Chromium against target/debug/decentd, built by `cargo test`). Installs the pinned
# npm packages (package-lock.json) on first use. Needs Node.js 20+ and /usr/bin/chromium
# (`apt-get install chromium`; `CHROMIUM=...` points elsewhere).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
echo "== tsc --noEmit --checkJs (web/js)"
npx tsc -p ../../web/jsconfig.json
echo "== browser tests"
# The HTTPS tests' certificate (tls.test.mjs): trusted by the tests' own fetch calls.
export NODE_EXTRA_CA_CERTS="$PWD/../fixtures/tls/localhost.crt"
node --test --test-concurrency=1 .

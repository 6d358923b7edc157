#!/usr/bin/env bash
# System packages some tests use (Debian/Ubuntu); those tests skip cleanly without them:
#   chromium                 tests/browser/test_review_browser.py (driven by Playwright, which
#                            must NOT download its own browsers: never run `playwright install`)
#   libimage-exiftool-perl   tests/test_provenance.py reads the XMP back with exiftool
#   fonts-dejavu-core        readable text in the review screenshot
#   postgresql               the SQL tests' server (tests/postgres.py runs initdb and pg_ctl
#                            from /usr/lib/postgresql/*/bin; Debian's own cluster is not used)
# Idempotent: returns at once when everything is installed (~0.01 s); a first install with
# `apt-get update` takes about 1.5 minutes. Uses sudo when not root.
# Usage: bash tests/system_deps.sh
set -euo pipefail
have_postgres() {
    command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if command -v chromium >/dev/null && command -v exiftool >/dev/null \
    && [ -d /usr/share/fonts/truetype/dejavu ] && have_postgres; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "system_deps.sh: no apt-get; install Chromium, exiftool and PostgreSQL yourself" \
         "(set ADGEN_CHROMIUM to the browser binary)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
    chromium libimage-exiftool-perl fonts-dejavu-core postgresql >/dev/null
chromium --version 2>/dev/null | head -n 1
exiftool -ver
ls /usr/lib/postgresql/*/bin/initdb | tail -n 1

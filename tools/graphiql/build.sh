#!/usr/bin/env bash
# Rebuilds app/graphql/static/graphiql/vendor.{js,css} and THIRD_PARTY_LICENSES from npm, at the
# exact versions of package-lock.json (`npm ci` refuses a lock that does not match package.json).
# To upgrade: change the versions in package.json, `npm install`, run this, commit all four files.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node build.mjs

#!/usr/bin/env bash
# Build FerretDB v1.24.2 (the second MongoDB-wire test engine) from source with Go >= 1.24.
#
# Usage: .ci/build-ferretdb.sh [BIN_DIR]
#   BIN_DIR defaults to $HOME/.cache/labelstream/ferretdb/bin.
#
# Why not a bare `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: that builds,
# but the binary panics at start-up ("Invalid build/version/version.txt file content"),
# because build/version/version.txt is generated from git and is not part of the module zip
# (FerretDB issue #4001). So this script fetches the same module version with
# `go mod download` (checksum-verified like `go install pkg@version`), copies it to a temp
# dir, writes version.txt, and runs `go install ./cmd/ferretdb` there with GOBIN=BIN_DIR.
# The dependency versions are exactly those of the release's own go.mod/go.sum.
#
# Go's module cache (GOMODCACHE) and build cache (GOCACHE) are left at their defaults and
# never wiped, so keeping those directories between CI runs makes rebuilds fast. The build
# is skipped when BIN_DIR/ferretdb already reports the wanted version. Progress goes to
# stderr; the last line on stdout is the absolute path of the binary.
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"

bin_dir="${1:-${HOME}/.cache/labelstream/ferretdb/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"
binary="${bin_dir}/ferretdb"

log() { printf 'build-ferretdb: %s\n' "$*" >&2; }

installed_version() {
    # The version the binary reports ("v1.24.2"), or nothing.
    { "${binary}" --version 2>/dev/null || true; } | awk '$1 == "version:" { print $2; exit }'
}

if [[ -x "${binary}" && "$(installed_version)" == "${FERRETDB_VERSION}" ]]; then
    log "${binary} is already ${FERRETDB_VERSION}; nothing to build"
    printf '%s\n' "${binary}"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    log "error: the Go toolchain ('go') is not on PATH; install Go 1.24 or newer"
    exit 1
fi
log "using $(go version)"

start=${SECONDS}
work="$(mktemp -d "${TMPDIR:-/tmp}/build-ferretdb.XXXXXX")"
trap 'chmod -R u+w "${work}" 2>/dev/null || true; rm -rf "${work}"' EXIT

# Run the go commands outside any module or workspace the caller may be in.
cd "${work}"
export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false"

log "fetching ${FERRETDB_MODULE}@${FERRETDB_VERSION}"
mod_dir="$(go mod download -json "${FERRETDB_MODULE}@${FERRETDB_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "${mod_dir}" || ! -f "${mod_dir}/go.mod" ]]; then
    log "error: 'go mod download' did not report the module directory"
    exit 1
fi

src="${work}/src"
cp -R "${mod_dir}" "${src}"
chmod -R u+w "${src}"
printf '%s\n' "${FERRETDB_VERSION}" >"${src}/build/version/version.txt"
printf '%s\n' "labelstream-ci" >"${src}/build/version/package.txt"

log "building into ${bin_dir}"
rm -f "${binary}" # stale or foreign; `go install` refuses to overwrite a non-Go file
(cd "${src}" && GOBIN="${bin_dir}" CGO_ENABLED=0 go install -trimpath ./cmd/ferretdb)
log "built in $((SECONDS - start)) s"

got="$(installed_version)"
if [[ "${got}" != "${FERRETDB_VERSION}" ]]; then
    log "error: ${binary} reports version '${got:-?}', expected ${FERRETDB_VERSION}:"
    "${binary}" --version >&2 || true
    exit 1
fi

printf '%s\n' "${binary}"

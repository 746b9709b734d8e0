#!/usr/bin/env bash
# Build the second MongoDB-wire test engine: FerretDB 2.7.0 in front of PostgreSQL 15 with
# Microsoft's DocumentDB extension (plus the pgvector and pg_cron it needs).
#
# Usage: .ci/build-ferretdb2.sh [BIN_DIR]
#   BIN_DIR defaults to $HOME/.cache/labelstream/ferretdb2/bin.
#
# No registry serves DocumentDB, a pg_cron >= 1.5 or pgvector for Debian bookworm, so their
# sources are vendored in ../shared/vendor/ (see its README for what was measured there). This
# script:
#   1. installs Debian's PostgreSQL 15 and the build dependencies with apt-get (when missing);
#   2. builds and installs pgvector, pg_cron and DocumentDB into that PostgreSQL (skipped when
#      the installed control files already have the vendored versions);
#   3. builds FerretDB v2.7.0 with `go install` from the Go module proxy into BIN_DIR (skipped
#      when the binary already reports that version).
# Progress goes to stderr; the last line on stdout is the absolute path of the ferretdb binary.
set -euo pipefail

FERRETDB_VERSION="v2.7.0"
DOCUMENTDB_VERSION="0.106-0"
PGVECTOR_VERSION="0.8.0"
PG_CRON_VERSION="1.6.3"
PG_MAJOR=15

here="$(cd "$(dirname "$0")" && pwd)"
vendor="${LABELSTREAM_VENDOR_DIR:-${here}/../../shared/vendor}"
bin_dir="${1:-${HOME}/.cache/labelstream/ferretdb2/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"
binary="${bin_dir}/ferretdb"

log() { printf 'build-ferretdb2: %s\n' "$*" >&2; }
start=${SECONDS}

# --- 1. Debian packages --------------------------------------------------------------------
packages=(
    "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" libbson-dev libpcre2-dev
    libintelrdfpmath-dev libkrb5-dev "postgresql-${PG_MAJOR}-rum" "postgresql-${PG_MAJOR}-postgis-3"
    "postgresql-${PG_MAJOR}-postgis-3-scripts"
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    sudo_cmd=()
    [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 -q update >&2 || true
    "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends \
        "${missing[@]}" >&2
fi

pg_config="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
extdir="$("${pg_config}" --sharedir)/extension"

control_version() { # the default_version a control file declares, or nothing
    sed -n "s/^default_version *= *'\(.*\)'/\1/p" "${extdir}/$1.control" 2>/dev/null || true
}

# --- 2. the PostgreSQL extensions ------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/build-ferretdb2.XXXXXX")"
trap 'chmod -R u+w "${work}" 2>/dev/null || true; rm -rf "${work}"' EXIT

unpack() { # unpack vendor/$1.tar.gz into $work, print the directory
    local tarball="${vendor}/$1.tar.gz"
    if [[ ! -f "${tarball}" ]]; then
        log "error: ${tarball} is missing (the vendored sources, see ../shared/vendor/README.md)"
        exit 1
    fi
    tar -xzf "${tarball}" -C "${work}"
    printf '%s\n' "${work}/$1"
}

jobs="$(nproc 2>/dev/null || echo 2)"
if [[ "$(control_version vector)" != "${PGVECTOR_VERSION}" ]]; then
    log "building pgvector ${PGVECTOR_VERSION}"
    src="$(unpack "pgvector-${PGVECTOR_VERSION}")"
    make -s -C "${src}" -j "${jobs}" PG_CONFIG="${pg_config}" >&2
    make -s -C "${src}" install PG_CONFIG="${pg_config}" >&2
fi
if [[ "$(control_version pg_cron)" != "1.6" ]]; then
    log "building pg_cron ${PG_CRON_VERSION}"
    src="$(unpack "pg_cron-${PG_CRON_VERSION}")"
    make -s -C "${src}" -j "${jobs}" PG_CONFIG="${pg_config}" >&2
    make -s -C "${src}" install PG_CONFIG="${pg_config}" >&2
fi
if [[ "$(control_version documentdb)" != "${DOCUMENTDB_VERSION}" ]]; then
    log "building DocumentDB ${DOCUMENTDB_VERSION}"
    src="$(unpack "documentdb-${DOCUMENTDB_VERSION}")"
    # Debian has no pkg-config file for the Intel decimal library DocumentDB links with.
    pcdir="${work}/pkgconfig"
    mkdir -p "${pcdir}"
    cat >"${pcdir}/intelmathlib.pc" <<'EOF'
prefix=/usr
libdir=/usr/lib/x86_64-linux-gnu
includedir=/usr/include
Name: intelmathlib
Description: Intel decimal floating-point math library
Version: 2.0
Cflags: -I${includedir}
Libs: -L${libdir} -lbidgcc000
EOF
    export PKG_CONFIG_PATH="${pcdir}${PKG_CONFIG_PATH:+:${PKG_CONFIG_PATH}}"
    # Debian's libbson (1.23) lacks a constant DocumentDB (built against 1.28) uses.
    copt="-DBSON_SUBTYPE_SENSITIVE=0x08 -Wno-error=switch"
    for part in pg_documentdb_core pg_documentdb; do
        make -s -C "${src}/${part}" -j "${jobs}" with_llvm=no PG_CONFIG="${pg_config}" COPT="${copt}" >&2
        make -s -C "${src}/${part}" install with_llvm=no PG_CONFIG="${pg_config}" COPT="${copt}" >&2
    done
fi

# --- 3. FerretDB 2 ---------------------------------------------------------------------------
installed_version() {
    { "${binary}" --version 2>/dev/null || true; } | awk '$1 == "version:" { print $2; exit }'
}
if [[ ! -x "${binary}" || "$(installed_version)" != "${FERRETDB_VERSION}" ]]; then
    if ! command -v go >/dev/null 2>&1; then
        log "error: the Go toolchain ('go') is not on PATH"
        exit 1
    fi
    log "go install github.com/FerretDB/FerretDB/v2/cmd/ferretdb@${FERRETDB_VERSION} ($(go version))"
    rm -f "${binary}"
    (cd "${work}" && GOWORK=off GOBIN="${bin_dir}" CGO_ENABLED=0 \
        go install -trimpath "github.com/FerretDB/FerretDB/v2/cmd/ferretdb@${FERRETDB_VERSION}") >&2
fi
log "ready in $((SECONDS - start)) s"
printf '%s\n' "${binary}"

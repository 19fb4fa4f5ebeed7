#!/usr/bin/env bash
# Build pinned Go binaries for a local test node (btcd, geth) from the Go module proxy into a
# cache directory: no clone and no system package needed. Idempotent: with the same pin a second
# run only checks the stamp and prints the directory.
# Prints the directory holding the binaries on stdout; diagnostics go to stderr.
#
#   usage: go-install.sh NAME VERSION MODULE_PATH... (each built at @VERSION)
#   SYNOD_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/synod)
#   GO_BUILD_JOBS     parallel build jobs passed to `go install -p` (default 1: shared machines)
set -euo pipefail

name="$1" version="$2"
shift 2
cache="${SYNOD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/synod}"
bindir="$cache/go/$name-$version/bin"
stamp="$bindir/.installed"

if [ "$(cat "$stamp" 2>/dev/null)" = "$version $*" ]; then
    echo "$bindir"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "go-install.sh: Go is required (https://go.dev/dl/) to build $name; none found on PATH" >&2
    exit 1
fi

mkdir -p "$bindir"
echo "go-install.sh: building $name $version from the Go module proxy into $bindir" \
    "(first use only; a few minutes on two cores)" >&2
start=$(date +%s)
modules=()
for module in "$@"; do modules+=("$module@$version"); done
# GOFLAGS from the environment could force -mod=vendor or similar; the pin is the module version.
GOBIN="$bindir" GOFLAGS=-buildvcs=false nice -n 10 go install -trimpath -p "${GO_BUILD_JOBS:-1}" \
    "${modules[@]}" >&2
echo "$version $*" >"$stamp"
echo "go-install.sh: built $name in $(($(date +%s) - start)) s" >&2
echo "$bindir"

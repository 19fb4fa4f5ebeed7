#!/usr/bin/env bash
# Build a pinned btcd + btcctl for the Bitcoin end-to-end tests (a real node on loopback).
# Uses `go install` from the Go module proxy, so no clone and no system package is needed.
# Idempotent: a second run with the same pin only checks the binaries and prints the dir.
# Prints the directory holding the binaries on stdout; diagnostics go to stderr.
#
#   BTCD_VERSION     module version to install (default below; v0.24.x has Taproot)
#   SYNOD_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/synod)
#   BTCD_BUILD_JOBS  parallel build jobs passed to `go install -p` (default 1: shared machines)
set -euo pipefail

version="${BTCD_VERSION:-v0.24.2}"
cache="${SYNOD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/synod}"
bindir="$cache/go/btcd-$version/bin"
stamp="$bindir/.installed"

if [ -x "$bindir/btcd" ] && [ -x "$bindir/btcctl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    echo "$bindir"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "btcd.sh: Go is required (https://go.dev/dl/); none found on PATH" >&2
    exit 1
fi

mkdir -p "$bindir"
echo "btcd.sh: installing btcd and btcctl $version into $bindir" >&2
start=$(date +%s)
# GOFLAGS from the environment could force -mod=vendor or similar; the pin is the module version.
GOBIN="$bindir" GOFLAGS=-buildvcs=false nice -n 10 go install -trimpath -p "${BTCD_BUILD_JOBS:-1}" \
    "github.com/btcsuite/btcd@$version" \
    "github.com/btcsuite/btcd/cmd/btcctl@$version" >&2
echo "$version" >"$stamp"
echo "btcd.sh: built in $(($(date +%s) - start)) s" >&2
echo "$bindir"

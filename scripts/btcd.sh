#!/usr/bin/env bash
# btcd + btcctl for the Bitcoin end-to-end tests and the demo (a real node on loopback).
# v0.24.x has Taproot. Prints the directory holding the binaries (see go-install.sh).
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" btcd "${BTCD_VERSION:-v0.24.2}" \
    github.com/btcsuite/btcd github.com/btcsuite/btcd/cmd/btcctl

#!/usr/bin/env bash
# geth for the EVM tests on a production client (`geth --dev`, a real node on loopback).
# Pinned to the 1.15 line: newer releases depend on a module version the Go module proxy does
# not serve. Prints the directory holding the binary (see go-install.sh).
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" geth "${GETH_VERSION:-v1.15.11}" \
    github.com/ethereum/go-ethereum/cmd/geth

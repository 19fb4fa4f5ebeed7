#!/usr/bin/env bash
# CometBFT for the replicated ledger: the BFT consensus engine that orders the custody state
# machine's transactions (the synod ABCI application runs beside it on loopback). Pinned to the
# v0.38 line (ABCI 2.0: PrepareProposal/ProcessProposal/FinalizeBlock). Prints the directory
# holding the binary (see go-install.sh).
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" cometbft "${COMETBFT_VERSION:-v0.38.26}" \
    github.com/cometbft/cometbft/cmd/cometbft

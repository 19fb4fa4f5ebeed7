# synod — the two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and build the Rust core (release) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
export CARGO_TARGET_DIR ?= $(CURDIR)/rust/target

.PHONY: demo test build lint typecheck clippy pytest bench sysdeps clean

# The whole pipeline on local engines: btcd (built from the Go module proxy on first use),
# in-process EVMs and the Solana runtime; a 3-of-5 committee of member processes, one stopped
# and one lying, on one local ledger with the REST API. Then five `synod member run`
# processes (each its signer node, its replica behind its own CometBFT validator, its runtime
# and its API; CometBFT built from the Go module proxy on first use) pay Bitcoin withdrawals
# submitted through one member's API, again with one member stopped and one lying.
demo: build
	$(BIN)/synod demo
	$(BIN)/synod demo --members

test: build lint typecheck clippy pytest

# System packages the build needs (m4 for the bundled GMP build); installed only if missing.
sysdeps:
	@command -v cargo >/dev/null || { echo "error: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
	@command -v m4 >/dev/null || { echo "installing m4 (needed to build GMP)"; \
		(apt-get update -qq && apt-get install -y -qq m4) >/dev/null; }

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.tools: pyproject.toml | $(PY)
	$(PY) -m pip install -q "maturin>=1.7,<2"
	touch $@

# Rebuild the extension when the Rust sources change (Python sources are installed editable).
$(VENV)/.built: $(VENV)/.tools pyproject.toml rust/Cargo.toml $(wildcard rust/src/*.rs) | sysdeps
	@echo "building the Rust core (release; the first build takes several minutes)"
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/maturin develop --release --extras dev
	touch $@

build: $(VENV)/.built

lint: build
	$(BIN)/ruff check python tests
	$(BIN)/ruff format --check python tests
	$(BIN)/lint-imports

typecheck: build
	$(BIN)/mypy

clippy: sysdeps
	cd rust && cargo clippy --release --all-targets -- -D warnings

# PostgreSQL tests need a server: scripts/postgres-for-tests.sh starts (or installs, as root)
# one and prints its DSN; without it they are skipped (CI sets SYNOD_REQUIRE_POSTGRES=1).
pytest: build
	SYNOD_TEST_POSTGRES_DSN="$${SYNOD_TEST_POSTGRES_DSN:-$$(scripts/postgres-for-tests.sh || true)}" \
		$(BIN)/pytest -q

bench: build
	$(PY) -m synod.bench

clean:
	rm -rf $(VENV) rust/target .pytest_cache .mypy_cache .ruff_cache

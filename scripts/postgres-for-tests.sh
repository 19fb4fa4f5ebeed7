#!/usr/bin/env bash
# Make a local PostgreSQL server available to the test suite (Debian/Ubuntu packages).
# Installs it when missing and we are root, starts the first cluster, and gives the
# current user a superuser role so the tests can create and drop their own databases.
# Prints the DSN to use on stdout; exits non-zero (with a reason on stderr) if it cannot.
set -euo pipefail
# Only the DSN may reach stdout: callers capture it with $(...). Every other command sends its
# stdout to stderr, and that must be done per command: a server started from here would keep
# a redirected-but-inherited stdout pipe open forever, and $(...) would never return.

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "postgres-for-tests: PostgreSQL is not installed (apt-get install postgresql)" >&2
        exit 1
    fi
    echo "postgres-for-tests: installing PostgreSQL from the Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null 2>&1 </dev/null
fi

read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1) || true
if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$version" main >/dev/null
    read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
fi
if [ "$status" != "online" ]; then
    pg_ctlcluster "$version" "$cluster" start >&2
fi

me=$(id -un)
if [ "$(id -u)" = 0 ]; then
    cd /  # psql as the postgres user cannot enter every caller's directory
    runuser -u postgres -- psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$me'" | grep -q 1 \
        || runuser -u postgres -- psql -p "$port" -qc "CREATE ROLE \"$me\" LOGIN SUPERUSER" >&2
fi
echo "host=/var/run/postgresql port=$port dbname=postgres user=$me"

#!/usr/bin/env bash
# Regenerate the Python protobuf modules for every python/synod/node/proto/*.proto (messages
# only: the services are registered and called by hand in synod.node.control and
# synod.node.grpc_transport, so no generated servicer stubs are kept).
# The generated files are committed; run this after editing a .proto. The generator is
# pinned (GRPC_TOOLS_VERSION) so the output is reproducible; it is installed into a
# private virtual environment under the build cache when the active Python lacks it.
set -euo pipefail

GRPC_TOOLS_VERSION="1.85.1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROTO_DIR="python/synod/node/proto"
PY="${PYTHON:-python3}"

have() {
  "$1" - "$GRPC_TOOLS_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("grpcio-tools") == sys.argv[1] else 1)
PY
}

if ! have "$PY"; then
  TOOLS="$ROOT/rust/target/grpc-tools-$GRPC_TOOLS_VERSION"
  if [ ! -x "$TOOLS/bin/python" ]; then
    echo "installing grpcio-tools==$GRPC_TOOLS_VERSION into $TOOLS" >&2
    "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q "grpcio-tools==$GRPC_TOOLS_VERSION"
  fi
  PY="$TOOLS/bin/python"
fi

cd "$ROOT/python"
shopt -s nullglob
protos=(synod/node/proto/*.proto)
if [ ${#protos[@]} -eq 0 ]; then
  echo "no .proto files under $PROTO_DIR" >&2
  exit 1
fi
"$PY" -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. \
  "${protos[@]}"
echo "generated: ${protos[*]}" >&2

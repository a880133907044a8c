#!/usr/bin/env bash
# Compile and test FlexGrid's contracts with eth-brownie, in a throw-away venv that never touches
# the project's. Brownie pins ~80 exact versions (web3, pytest, hypothesis...), so it cannot share
# .venv. It compiles through the project's solc shim (tools/solc), registered as solc-v<version>
# in a temporary HOME, and tests against an anvil it starts itself (a Development network).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
BROWNIE_VENV=${BROWNIE_VENV:-$ROOT/build/brownie-venv}
SOLC_VERSION=$(node -p "require('./node_modules/solc/package.json').version")

if [ ! -x "$BROWNIE_VENV/bin/brownie" ]; then
  echo "brownie: installing eth-brownie 1.22.0 into $BROWNIE_VENV (throw-away venv)"
  "$PYTHON" -m venv "$BROWNIE_VENV"
  "$BROWNIE_VENV/bin/pip" install --quiet --disable-pip-version-check "eth-brownie==1.22.0"
fi

TMP_HOME=$(mktemp -d)
trap 'rm -rf "$TMP_HOME"' EXIT
export HOME=$TMP_HOME
export PATH=$ROOT/node_modules/.bin:$PATH
mkdir -p "$HOME/.solcx" build/brownie
ln -sf "$ROOT/tools/solc" "$HOME/.solcx/solc-v$SOLC_VERSION"
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BROWNIE_VENV/bin/brownie" networks add Development anvil-flexgrid cmd=anvil host=http://127.0.0.1 port="$PORT" >/dev/null
"$BROWNIE_VENV/bin/brownie" compile
"$BROWNIE_VENV/bin/brownie" test --network anvil-flexgrid -p no:cacheprovider

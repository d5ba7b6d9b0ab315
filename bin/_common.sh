# Shared by the bin/ wrappers: locate the repository and its virtualenv.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
need_venv() {
  if [ ! -x "$VENV/bin/$1" ]; then
    echo "$(basename "$0"): not installed yet; run bin/setup first" >&2
    exit 1
  fi
}

#!/usr/bin/env bash
# Re-pin constraints.txt, the tested set of every dependency (runtime, test and the optional
# extras, transitive included): install the package with all its extras into a fresh virtualenv
# and freeze it. Run after changing the dependencies in pyproject.toml, then run the tests.
#
#   bash scripts/lock.sh             keep the current pins, pin what is new (a new dependency)
#   bash scripts/lock.sh --upgrade   newest versions of everything but torch's pinned CPU build
#
# PYTHON picks the interpreter (default python3); the pins hold for its version and platform.
set -euo pipefail
cd "$(dirname "$0")/.."

lock=constraints.txt
keep=$lock
case "${1:-}" in
  --upgrade) keep=$(mktemp); grep '^torch==' "$lock" > "$keep" ;;
  "") ;;
  *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"; [ "$keep" = "$lock" ] || rm -f "$keep"' EXIT
"${PYTHON:-python3}" -m venv "$work/venv"
python=$work/venv/bin/python
extras=$("$python" -c 'import tomllib
with open("pyproject.toml", "rb") as f:
    print(",".join(tomllib.load(f)["project"].get("optional-dependencies", {})))')
"$python" -m pip install -q -c "$keep" -e ".[$extras]"

frozen=$("$python" -m pip freeze --all --exclude pip --exclude-editable)
if grep -qiE '^nvidia-|^torch==[^+]*$' <<<"$frozen"; then
  echo "refusing to pin a CUDA build of torch: pin torch==<version>+cpu first" >&2
  exit 1
fi
{
  echo "# The tested set of every dependency of lstm-asr (runtime, test, extras: $extras),"
  echo "# transitive included, for $("$python" -c 'import platform, sys
print(f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]} on",
      f"{platform.system()} {platform.machine()}")'), with torch's CPU build."
  echo '# Install with it: pip install -c constraints.txt -e ".[test]"'
  echo "# Regenerate (after changing pyproject.toml's dependencies): bash scripts/lock.sh"
  echo "#   (keeps these pins, pins new packages; --upgrade re-resolves all but torch)"
  echo "$frozen"
} > "$lock"
echo "wrote $lock: $(grep -cv '^#' "$lock") packages" >&2

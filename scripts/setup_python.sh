#!/usr/bin/env bash
# Makes the project's Python environment: a venv of Debian's python3 at $LOSSGUARD_VENV (default
# .venv in the repository) holding torch from PyPI, transformers, TRL, accelerate, datasets, pytest
# and scikit-build-core at the versions pinned in collector/python/env/constraints.txt, and the older
# transformers releases of collector/python/env/overlays.txt in .venv/overlays/. Idempotent: a venv
# made from the same pins is left alone (their hashes are kept in the venv). scripts/setup.sh calls
# it; lossguard itself is built into the venv by scripts/build_python.sh.
#   LOSSGUARD_NO_TORCH=1   skip it (server-only machines)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${LOSSGUARD_NO_TORCH:-0}" == 1 ]] && exit 0

venv=${LOSSGUARD_VENV:-$PWD/.venv}
env_dir=collector/python/env
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
main_hash=$(hash_of "$env_dir/requirements.txt" "$env_dir/constraints.txt")
overlays_hash=$(hash_of "$env_dir/overlays.txt")
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
started=$(date +%s)

if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.lossguard-pins" 2>/dev/null)" != "$main_hash" ]]; then
  echo "setup: making the Python environment in $venv (torch, transformers, TRL: about 4 GB)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "${pip[@]}" install --constraint "$env_dir/constraints.txt" pip
  "${pip[@]}" install --constraint "$env_dir/constraints.txt" --requirement "$env_dir/requirements.txt"
  echo "$main_hash" > "$venv/.lossguard-pins"
fi
if [[ "$(cat "$venv/overlays/.lossguard-pins" 2>/dev/null)" != "$overlays_hash" ]]; then
  rm -rf "$venv/overlays"
  while read -r name requirements; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    # shellcheck disable=SC2086  # the requirements are words
    "${pip[@]}" install --no-deps --target "$venv/overlays/$name" $requirements 2>&1 \
      | { grep -v "yanked" || true; }
  done < "$env_dir/overlays.txt"
  echo "$overlays_hash" > "$venv/overlays/.lossguard-pins"
  echo "setup: Python environment ready in $(( $(date +%s) - started )) s ($(du -sh "$venv" | cut -f1))"
fi

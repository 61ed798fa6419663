#!/usr/bin/env bash
# Fails (listing the files) when any C++ source is not clang-format clean. Fix with:
#   git ls-files '*.cc' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h')
[[ ${#files[@]} -eq 0 ]] && exit 0
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
  echo "check_format: not clang-format clean: ${bad[*]}" >&2
  echo "fix with: git ls-files '*.cc' '*.h' | xargs clang-format -i" >&2
  exit 1
fi

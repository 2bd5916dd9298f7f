#!/usr/bin/env bash
# Print the path of a working python<VERSION> (e.g. 3.12): pyenv's install of that version where pyenv has one,
# else the first python<VERSION> on PATH that runs. Exit 1 with a message on stderr when there is none.
set -uo pipefail
version="${1:?usage: find_python.sh VERSION (e.g. 3.12)}"
if command -v pyenv >/dev/null 2>&1; then
  prefix="$(pyenv prefix "$version" 2>/dev/null)" && [ -x "$prefix/bin/python$version" ] \
    && { echo "$prefix/bin/python$version"; exit 0; }
fi
# pyenv's shims exist for every installed version but fail unless that version is selected: run it to be sure.
if candidate="$(command -v "python$version" 2>/dev/null)" && "$candidate" -c "" >/dev/null 2>&1; then
  echo "$candidate"; exit 0
fi
echo "find_python.sh: no Python $version here (neither pyenv nor PATH has python$version)" >&2
exit 1

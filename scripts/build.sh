#!/bin/sh
# Builds the service binary to OUTPUT: the one build that the image ships and
# tests/cluster runs. Version information is Go's own build info
# (`go version -m OUTPUT`), stamped from git when the source is a git clone.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTPUT" >&2
	exit 2
fi
case $1 in
/*) out=$1 ;;
*) out=$PWD/$1 ;;
esac
cd "$(dirname "$0")/.."
# cgo: SQLite is compiled in (mattn/go-sqlite3).
CGO_ENABLED=1 exec go build -trimpath -ldflags "-s -w" -o "$out" .

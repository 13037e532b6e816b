#!/bin/sh
# Run the dialbridge daemon for one cell: ./run.sh <cell>
# Works from a checkout (builds bin/dialbridge when missing or stale) and from
# an install (/usr/local/bin/dialbridge with /etc/dialbridge/settings.yaml).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 <cell>   (a cell named in queues of the settings)" >&2
	exit 2
fi
cell=$1
here=$(cd "$(dirname "$0")" && pwd)

if [ -f "$here/go.mod" ] && [ -d "$here/cmd/dialbridge" ]; then
	# From a checkout.
	if command -v go >/dev/null 2>&1; then
		(cd "$here" && make -s build)
	fi
	bin="$here/bin/dialbridge"
	config=${DIALBRIDGE_CONFIG:-$here/configs/settings.yaml}
else
	bin=$(command -v dialbridge || echo /usr/local/bin/dialbridge)
	config=${DIALBRIDGE_CONFIG:-/etc/dialbridge/settings.yaml}
fi

exec "$bin" run --config "$config" "$cell"

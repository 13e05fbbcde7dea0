#!/usr/bin/env bash
# The state of a loopback job (see submit.sh), in the words cluster-generic expects.
dir="$1"
if [[ ! -f "$dir/exit_code" ]]; then
    echo running
elif [[ "$(cat "$dir/exit_code")" == 0 ]]; then
    echo success
else
    echo failed
fi

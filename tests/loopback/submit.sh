#!/usr/bin/env bash
# A loopback "cluster" for snakemake-executor-plugin-cluster-generic: each job script runs
# in a fresh empty directory under $LOOPBACK_ROOT, as on a Kubernetes pod or a batch VM,
# and shares nothing with the run but object storage: the job script itself fetches the
# workflow's sources from there (--job-deploy-sources). Prints the job's id (its
# directory) for status.sh.
set -euo pipefail
jobscript="${!#}"
dir=$(mktemp -d "${LOOPBACK_ROOT:?}/job.XXXXXX")
cp "$jobscript" "$dir/job.sh"
(
    cd "$dir"
    code=0
    bash job.sh > job.out 2>&1 || code=$?
    echo "$code" > exit_code.part && mv exit_code.part exit_code
) > /dev/null 2>&1 < /dev/null &
echo "$dir"

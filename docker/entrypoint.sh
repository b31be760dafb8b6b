#!/bin/sh
# Roles of the mixlake image: scheduler | worker | runner | run | demo-data | <any command>
set -eu
role="${1:-runner}"
[ "$#" -gt 0 ] && shift
case "$role" in
  scheduler)
    exec dask scheduler --host 0.0.0.0 --port 8786 --dashboard-address :8787 "$@" ;;
  worker)
    exec dask worker "${DASK_SCHEDULER_ADDRESS:-tcp://scheduler:8786}" \
      --nthreads "${DASK_WORKER_THREADS:-1}" --memory-limit "${DASK_WORKER_MEMORY:-2GiB}" \
      --local-directory /tmp/dask-worker "$@" ;;
  runner)
    # serve the fit flow on the config's cron schedule (needs PREFECT_API_URL)
    exec mixlake serve "${MIXLAKE_CONFIG:-/opt/mixlake/configs/compose.yaml}" "$@" ;;
  run)
    exec mixlake run "${MIXLAKE_CONFIG:-/opt/mixlake/configs/compose.yaml}" "$@" ;;
  demo-data)
    exec python -c "from pipeline.demo import make_demo_data; make_demo_data('/data/demo')" ;;
  *)
    exec "$role" "$@" ;;
esac

"""The open-files limit (RLIMIT_NOFILE): every connection is a descriptor, so the master raises its soft limit
to the hard one before forking (the workers inherit it) and says when it is too low for the connections asked
for."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("fastcluster.master")

#: Descriptors a worker needs besides its connections: listeners, epoll, pipes, logs, the static-file cache.
RESERVED = 300


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit and return the soft limit now in force. The limit is
    per process, so it bounds each worker's connections: warn when it is below --limit-connections (plus
    the descriptors a worker needs besides), and say how many connections fit when no limit is set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, max_connections + RESERVED, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # e.g. a hard limit over fs.nr_open
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, wanted, exc)
    fits = max(soft - RESERVED, 0)
    if max_connections and fits < max_connections:
        log.warning("open files limit %d (hard %s) leaves room for about %d connections per worker, fewer "
                    "than --limit-connections %d: raise it (ulimit -Hn, LimitNOFILE=, prlimit)", soft,
                    "unlimited" if hard == resource.RLIM_INFINITY else hard, fits, max_connections)
    else:
        log.info("open files limit %d: up to about %d connections per worker", soft, fits)
    return soft

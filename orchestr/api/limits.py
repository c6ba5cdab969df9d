"""Resource limit names shared by the client (`--ulimit`, Compose's `ulimits:`) and the
daemon (HostConfig.Ulimits).

go-units' ulimit names; Docker leaves out "as" (unusable with the way it inits).
"""

ULIMITS = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)

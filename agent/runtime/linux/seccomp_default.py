"""Docker's default seccomp profile as an OCI `linux.seccomp` object (pure data).

An allow-list: every syscall not named here fails with EPERM. The data follows
moby's profiles/seccomp/default.json (Apache-2.0; moby/moby b985e23): the same
unconditional list, the same argument rules (personality values, socket
families without AF_ALG and AF_VSOCK, clone without namespace flags, clone3
answering ENOSYS so libc falls back to clone) and the same syscalls unlocked
per capability and per architecture.

Where it differs from Docker:
- Docker checks `includes`/`excludes.caps` against the container's bounding
  set; here the caller passes `caps` (Docker's default set when omitted).
- Architecture conditions use `machine` (os.uname().machine by default), not
  Go's GOARCH; `architectures` is the native one plus the compat ABIs Docker
  lists for it (x86_64: x86 and x32; aarch64: arm; s390x: s390).
- ptrace, process_vm_readv and process_vm_writev are allowed without Docker's
  "kernel >= 4.8" check: the runtime needs a far newer kernel anyway.
- The output is flat: one deduplicated allow entry, then the entries with
  argument conditions or other actions. No `comment`, `includes`, `archMap`.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs start-up time; mypy still sees the block
if TYPE_CHECKING:
    from collections.abc import Iterable

# The capabilities Docker grants a container by default.
DOCKER_DEFAULT_CAPS = frozenset(
    {
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }
)

EPERM = 1
ENOSYS = 38

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
# | CLONE_NEWPID | CLONE_NEWNET: clone may not create namespaces.
CLONE_NAMESPACE_FLAGS = 0x7E020000

# Allowed for everyone, on every architecture (names unknown to libseccomp or
# to this architecture are skipped when the filter is compiled).
ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount
statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()  # noqa: SIM905 - a word list, not 360 one-per-line literals

# ptrace and friends: Docker allows them from kernel 4.8 on.
ALLOWED_PTRACE = ("process_vm_readv", "process_vm_writev", "ptrace")

# Docker architecture name (GOARCH-like) -> extra syscalls allowed there.
ALLOWED_BY_ARCH: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"ppc64le"}), ("sync_file_range2", "swapcontext")),
    (
        frozenset({"arm", "arm64"}),
        (
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ),
    ),
    (frozenset({"amd64", "x32"}), ("arch_prctl",)),
    (frozenset({"amd64", "x32", "x86"}), ("modify_ldt",)),
    (
        frozenset({"s390", "s390x"}),
        ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    ),
    (frozenset({"riscv64"}), ("riscv_flush_icache",)),
)

# Capability -> extra syscalls allowed when the container holds it.
ALLOWED_BY_CAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    (
        "CAP_SYS_ADMIN",
        tuple(
            """
            bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
            lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr
            move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
            sethostname setns syslog umount umount2 unshare
            """.split()  # noqa: SIM905
        ),
    ),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "init_module", "finit_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    (
        "CAP_SYS_PTRACE",
        (
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ),
    ),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)

# personality(2) values allowed: PER_LINUX, UNAME26, PER_LINUX32,
# UNAME26|PER_LINUX32, and 0xffffffff (query the current persona).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# socket(2) families allowed: all but AF_ALG (38) and AF_VSOCK (40).
SOCKET_FAMILY_RULES = (("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40))

# uname -m -> (Docker's architecture name, OCI architectures in the filter).
MACHINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x86_64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "i386": ("x86", ()),
    "i686": ("x86", ()),
    "aarch64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "armv7l": ("arm", ()),
    "armv6l": ("arm", ()),
    "ppc64le": ("ppc64le", ()),
    "s390x": ("s390x", ("SCMP_ARCH_S390X", "SCMP_ARCH_S390")),
    "riscv64": ("riscv64", ("SCMP_ARCH_RISCV64",)),
}


def default_profile(
    caps: Iterable[str] = DOCKER_DEFAULT_CAPS, machine: str | None = None
) -> dict[str, object]:
    """The default `linux.seccomp` for a container holding `caps` on `machine`."""
    caps = frozenset(caps)
    machine = machine or os.uname().machine
    arch, architectures = MACHINES.get(machine, (machine, ()))

    allowed = [*ALLOWED, *ALLOWED_PTRACE]
    for arches, names in ALLOWED_BY_ARCH:
        if arch in arches:
            allowed.extend(names)
    for cap, names in ALLOWED_BY_CAP:
        if cap in caps:
            allowed.extend(names)

    syscalls: list[dict[str, object]] = [
        {"names": list(dict.fromkeys(allowed)), "action": "SCMP_ACT_ALLOW"}
    ]
    syscalls += (_allow_if("socket", 0, op, family) for op, family in SOCKET_FAMILY_RULES)
    syscalls += (_allow_if("personality", 0, "SCMP_CMP_EQ", p) for p in PERSONALITIES)
    if "CAP_SYS_ADMIN" not in caps:
        flags_arg = 1 if arch in ("s390", "s390x") else 0  # s390 swaps clone's arguments
        syscalls.append(_allow_if("clone", flags_arg, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS))
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})

    profile: dict[str, object] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "syscalls": syscalls,
    }
    if architectures:
        profile["architectures"] = list(architectures)
    return profile


def _allow_if(name: str, index: int, op: str, value: int) -> dict[str, object]:
    """Allow `name` when argument `index` compares `op` to `value`."""
    return {
        "names": [name],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": index, "value": value, "op": op}],
    }

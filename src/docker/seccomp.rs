//! The seccomp profile `ensure --io-uring` gives the container.
//!
//! Docker's default profile blocks `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` (moby #46762), so inside a default container the
//! server falls back to epoll. An operator who wants io_uring opts in with
//! `ensure --io-uring`, which passes this profile instead: the same shape as
//! Docker's default (deny by default with EPERM, allow a list of ordinary
//! process, file, memory, socket and time syscalls) plus the three io_uring
//! ones. It is written out here rather than copied from moby; it leaves out
//! what Docker's default also keeps from containers: mounts, namespaces,
//! modules, kexec/reboot, ptrace and process_vm_*, bpf, perf_event_open,
//! keyrings, clock/time setting, swap, quotas, personality changes and
//! userfaultfd.

use serde_json::json;

/// Syscalls a container running project-http (and runc starting it) may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // process and threads
    "arch_prctl", "brk", "capget", "capset", "clone", "clone3", "execve", "execveat", "exit",
    "exit_group", "fork", "vfork", "wait4", "waitid", "getpid", "getppid", "gettid", "getpgid",
    "getpgrp", "getsid", "setsid", "setpgid", "getuid", "geteuid", "getgid", "getegid",
    "getresuid", "getresgid", "getgroups", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "prctl", "prlimit64",
    "getrlimit", "setrlimit", "getrusage", "getpriority", "setpriority", "sched_yield",
    "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr", "sched_setattr",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex", "futex_waitv",
    "membarrier", "uname", "sysinfo", "times", "umask", "getcpu", "restart_syscall",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "kill", "tkill",
    "tgkill", "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "pause", "alarm", "getitimer",
    "setitimer",
    // memory
    "mmap", "munmap", "mremap", "mprotect", "madvise", "msync", "mincore", "mlock", "mlock2",
    "munlock", "mlockall", "munlockall", "memfd_create", "get_mempolicy", "set_mempolicy",
    "mbind",
    // files and directories
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "stat",
    "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat",
    "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
    "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
    "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat",
    "fchmodat2", "chown", "fchown", "fchownat", "lchown", "truncate", "ftruncate", "fallocate",
    "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "flock", "fcntl", "ioctl",
    "dup", "dup2", "dup3", "pipe", "pipe2", "utime", "utimes", "utimensat", "futimesat",
    "fadvise64", "readahead", "sendfile", "splice", "tee", "vmsplice", "copy_file_range",
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    // polling, events, timers
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "poll", "ppoll", "select", "pselect6", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "clock_gettime", "clock_getres",
    "clock_nanosleep", "nanosleep", "gettimeofday", "time", "getrandom",
    // sockets
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown",
    // io_uring: what this profile adds to Docker's default
    "io_uring_setup", "io_uring_enter", "io_uring_register",
];

/// The profile as JSON, the form Docker takes inline in `SecurityOpt`
/// (`seccomp=<json>`). The text is stable, so `ensure` can compare it with
/// a running container's to notice drift.
pub fn io_uring_profile() -> String {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
            { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] }
        ],
        "syscalls": [
            { "names": ALLOWED, "action": "SCMP_ACT_ALLOW" }
        ]
    })
    .to_string()
}

/// The `SecurityOpt` entry that applies the profile.
pub fn security_opt() -> String {
    format!("seccomp={}", io_uring_profile())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_allows_io_uring_and_denies_the_dangerous_calls() {
        let profile: serde_json::Value = serde_json::from_str(&io_uring_profile()).unwrap();
        let names: Vec<&str> = profile["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for wanted in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "openat",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing");
        }
        for denied in [
            "mount",
            "ptrace",
            "bpf",
            "unshare",
            "setns",
            "kexec_load",
            "reboot",
        ] {
            assert!(!names.contains(&denied), "{denied} must stay blocked");
        }
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a syscall is listed twice");
    }
}

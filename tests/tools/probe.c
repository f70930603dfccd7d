/* An attacker's probe, run inside containers by the isolation tests
 * (tests/tests/isolation_docker_cli.rs): each verb tries one thing a default container
 * must not be able to do, and prints "<verb>: ok" or "<verb>: <errno name>".
 *
 *   probe clone user|net|pid|mnt|uts|ipc|cgroup[,...]   clone(2) with those CLONE_NEW* flags
 *   probe packet-in-userns   clone(CLONE_NEWUSER|CLONE_NEWNET), then socket(AF_PACKET) in it
 *   probe vmread PID         process_vm_readv(2) of one byte of PID's stack
 *   probe vmwrite PID        process_vm_writev(2) of one byte of PID's stack, written back
 *   probe handle PATH        name_to_handle_at(2) on PATH
 *
 * Built static (cc -static) so it runs in any image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return strerror(e);
    }
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s: %s\n", what, err_name(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
}

static int flag(const char *name) {
    if (!strcmp(name, "user")) return CLONE_NEWUSER;
    if (!strcmp(name, "net")) return CLONE_NEWNET;
    if (!strcmp(name, "pid")) return CLONE_NEWPID;
    if (!strcmp(name, "mnt")) return CLONE_NEWNS;
    if (!strcmp(name, "uts")) return CLONE_NEWUTS;
    if (!strcmp(name, "ipc")) return CLONE_NEWIPC;
    if (!strcmp(name, "cgroup")) return CLONE_NEWCGROUP;
    fprintf(stderr, "probe: unknown namespace %s\n", name);
    exit(2);
}

/* clone(2) through the raw syscall, as a fork: the child exits at once. */
static long raw_clone(int flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return r;
}

static int packet_child(void *arg) {
    (void)arg;
    int s = socket(AF_PACKET, SOCK_RAW, 0x0300 /* htons(ETH_P_ALL) */);
    report("packet socket in a nested user namespace", s);
    return 0;
}

/* The start of PID's stack, from /proc/PID/maps. */
static unsigned long stack_of(const char *pid) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%s/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    unsigned long start = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "[stack]")) {
            start = strtoul(line, NULL, 16);
            break;
        }
    }
    fclose(f);
    if (!start) {
        fprintf(stderr, "probe: no stack in %s\n", path);
        exit(2);
    }
    return start;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe clone NS[,NS...] | packet-in-userns | vmread PID | vmwrite PID | handle PATH\n");
        return 2;
    }
    const char *verb = argv[1];
    char what[256];
    if (!strcmp(verb, "clone") && argc == 3) {
        int flags = 0;
        char *list = strdup(argv[2]);
        for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
            flags |= flag(t);
        snprintf(what, sizeof what, "clone %s", argv[2]);
        report(what, raw_clone(flags));
    } else if (!strcmp(verb, "packet-in-userns")) {
        static char stack[1 << 16];
        int pid = clone(packet_child, stack + sizeof stack, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, NULL);
        report("clone user,net", pid);
        if (pid > 0)
            waitpid(pid, NULL, 0);
    } else if ((!strcmp(verb, "vmread") || !strcmp(verb, "vmwrite")) && argc == 3) {
        pid_t pid = (pid_t)atoi(argv[2]);
        unsigned long addr = stack_of(argv[2]);
        char byte;
        struct iovec local = {&byte, 1}, remote = {(void *)addr, 1};
        long r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (!strcmp(verb, "vmwrite") && r == 1)
            r = process_vm_writev(pid, &local, 1, &remote, 1, 0);
        snprintf(what, sizeof what, "%s %s", verb, argv[2]);
        report(what, r);
    } else if (!strcmp(verb, "handle") && argc == 3) {
        struct {
            struct file_handle h;
            unsigned char bytes[128];
        } fh;
        int mount_id;
        fh.h.handle_bytes = sizeof fh.bytes;
        snprintf(what, sizeof what, "handle %s", argv[2]);
        report(what, name_to_handle_at(AT_FDCWD, argv[2], &fh.h, &mount_id, 0));
    } else {
        fprintf(stderr, "probe: bad arguments\n");
        return 2;
    }
    return 0;
}

/* A TCP server for the services tests: answers each connection with NAME and a newline
 * (NAME: argv[2], else the hostname) after an optional delay, then closes it.
 *
 * Usage: tcp_serve PORT [NAME [DELAY_MS]]
 *
 * It creates /tmp/ready once it listens (a health check can test for it). On SIGTERM it
 * stops accepting, answers the connections it already accepted, and exits 0: a task
 * that finishes its requests within its stop grace period. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig) { (void)sig; stopping = 1; }

static void answer(int c, const char *name, long delay_ms) {
    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char buf[300];
    int n = snprintf(buf, sizeof buf, "%s\n", name);
    if (write(c, buf, (size_t)n) < 0) { /* the client went away */ }
    close(c);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: tcp_serve PORT [NAME [DELAY_MS]]\n"); return 2; }
    char name[256];
    if (argc > 2) snprintf(name, sizeof name, "%s", argv[2]);
    else if (gethostname(name, sizeof name) != 0) snprintf(name, sizeof name, "unknown");
    long delay_ms = argc > 3 ? atol(argv[3]) : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0) {
        perror("tcp_serve: bind/listen");
        return 1;
    }
    int r = open("/tmp/ready", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (r >= 0) close(r);
    while (!stopping) {
        struct pollfd p = {s, POLLIN, 0};
        int n = poll(&p, 1, 100);
        if (n <= 0) continue;
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        answer(c, name, delay_ms);
    }
    /* Stopping: what the kernel already accepted (the backlog) is answered too, and a
     * handshake that was in flight when the stop signal came (300 ms). */
    for (int i = 0; i < 3; i++) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) { answer(c, name, delay_ms); i = -1; }
    }
    close(s);
    return 0;
}

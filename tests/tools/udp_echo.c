/* A UDP echo server for tests: `udp_echo PORT` answers every datagram (up to 64 KiB)
 * with the same bytes and writes each to stdout. Built static (cc -static) so it runs in
 * any image. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp_echo PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("udp_echo: bind");
        return 1;
    }
    static char buf[65536];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n < 0)
            continue;
        sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
    }
}

/* WebSocket echo load: N connections, each sends one small masked text message and waits for its echo,
   over and over, for a bounded time. Prints the messages echoed and the errors. One thread, epoll.

       gcc -O2 -o ws_load ws_load.c
       ws_load PORT [PATH] [CONNECTIONS] [SECONDS] [MESSAGE]     (defaults: /ws 64 5 "Hello, World!")

   The mask key is fixed: servers unmask whatever key they get, so a varying one would only cost us. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_MESSAGE = 125 };  /* one frame with a 7-bit length, each way */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* A blocking connect and handshake; the socket, or -1. */
static int open_websocket(int port, const char *path) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (void *)&address, sizeof address) < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char request[512], answer[4096];
    int length = snprintf(request, sizeof request,
                          "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n", path, port);
    if (write(fd, request, length) != length) return -1;
    size_t got = 0;
    /* the server says nothing after its 101 until we send, so reading up to the blank line is exact */
    while (got < sizeof answer - 1 && !memmem(answer, got, "\r\n\r\n", 4)) {
        ssize_t n = read(fd, answer + got, 1);
        if (n <= 0) return -1;
        got += n;
    }
    if (strncmp(answer, "HTTP/1.1 101", 12) != 0) return -1;
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [PATH] [CONNECTIONS] [SECONDS] [MESSAGE]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argc > 2 ? argv[2] : "/ws";
    int connections = argc > 3 ? atoi(argv[3]) : 64;
    double seconds = argc > 4 ? atof(argv[4]) : 5;
    const char *message = argc > 5 ? argv[5] : "Hello, World!";
    size_t length = strlen(message);
    if (length > MAX_MESSAGE || connections < 1) {
        fprintf(stderr, "a message is at most %d bytes; at least one connection\n", MAX_MESSAGE);
        return 2;
    }
    /* the client's frame (FIN + text, masked) and the echo we expect (FIN + text, unmasked) */
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char frame[6 + MAX_MESSAGE], echo[2 + MAX_MESSAGE];
    size_t frame_length = 6 + length, echo_length = 2 + length;
    frame[0] = echo[0] = 0x81;
    frame[1] = 0x80 | length;
    echo[1] = length;
    memcpy(frame + 2, key, 4);
    for (size_t i = 0; i < length; i++) frame[6 + i] = message[i] ^ key[i & 3];
    memcpy(echo + 2, message, length);

    long messages = 0, errors = 0;
    size_t *received = calloc(connections, sizeof *received);  /* bytes of the awaited echo, by slot */
    int *fds = calloc(connections, sizeof *fds);
    int epoll = epoll_create1(0), alive = 0;
    for (int slot = 0; slot < connections; slot++) {
        fds[slot] = open_websocket(port, path);
        if (fds[slot] < 0) {
            errors++;
            continue;
        }
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = slot};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fds[slot], &event);
        if (write(fds[slot], frame, frame_length) != (ssize_t)frame_length) errors++;
        alive++;
    }
    double deadline = now() + seconds;
    struct epoll_event events[256];
    unsigned char input[4096];
    while (alive && now() < deadline) {
        int ready = epoll_wait(epoll, events, 256, 100);
        for (int i = 0; i < ready; i++) {
            int slot = events[i].data.u32, fd = fds[slot];
            ssize_t n = read(fd, input, sizeof input);
            /* one message in flight, so a read holds at most the rest of its echo */
            if (n <= 0 || received[slot] + n > echo_length
                    || memcmp(input, echo + received[slot], n) != 0) {
                errors++;
                close(fd);
                alive--;
                continue;
            }
            received[slot] += n;
            if (received[slot] < echo_length) continue;
            received[slot] = 0;
            messages++;
            if (write(fd, frame, frame_length) != (ssize_t)frame_length) errors++;
        }
    }
    printf("messages %ld errors %ld seconds %.3f\n", messages, errors, seconds);
    return 0;
}

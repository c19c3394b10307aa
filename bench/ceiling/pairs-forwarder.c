/*
 * pairs-forwarder - the least any program can do for mqttload's `pairs` (and
 * `fanin`) loads: the ceiling for a broker in any language on this machine.
 *
 * Not a broker. CONNECT -> CONNACK, SUBSCRIBE -> SUBACK (one filter, granted
 * as asked), PINGREQ -> PINGRESP, PUBLISH -> forwarded unchanged to the client
 * subscribed to exactly its topic, or to the client of the one `prefix/+`
 * filter it starts with (QoS 1: PUBACK to the publisher too); a subscriber's
 * PUBACK is ignored. One thread, level-triggered epoll, one read() per
 * readable event (64 KiB), and either a write() per packet (direct, as
 * Mosquitto) or one write() per destination per epoll batch (batch, as Petrel).
 *
 * usage: pairs-forwarder PORT [batch|direct]   127.0.0.1 only; stops after 600 s or on SIGTERM
 * (bench/ceiling/run.sh builds and runs it; bench/ceiling/node-forwarder.ts is the Node.js twin)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
#define TOPICS 65536

struct cl {
	uint8_t *carry; size_t carry_len, carry_cap;
	uint8_t *out; size_t out_off, out_len, out_cap;
	int dirty, open;
};
static struct cl cls[MAXFD];
static int dirty_list[MAXFD], ndirty;
static int batch = 1, epfd;
static volatile sig_atomic_t stop;
static struct { char *t; int fd; } tab[TOPICS];
static char *wild; static size_t wild_len; static int wild_fd = -1; /* the one filter ending in /+ */

static void on_sig(int s) { (void)s; stop = 1; }

static uint32_t h(const uint8_t *s, size_t n)
{
	uint32_t x = 2166136261u;
	for (size_t i = 0; i < n; i++) x = (x ^ s[i]) * 16777619u;
	return x;
}
static int lookup(const uint8_t *t, size_t n)
{
	for (uint32_t i = h(t, n) & (TOPICS - 1);; i = (i + 1) & (TOPICS - 1)) {
		if (!tab[i].t) return -1;
		if (strlen(tab[i].t) == n && !memcmp(tab[i].t, t, n)) return tab[i].fd;
	}
}
static void insert(const uint8_t *t, size_t n, int fd)
{
	for (uint32_t i = h(t, n) & (TOPICS - 1);; i = (i + 1) & (TOPICS - 1)) {
		if (!tab[i].t) { tab[i].t = strndup((const char *)t, n); tab[i].fd = fd; return; }
		if (strlen(tab[i].t) == n && !memcmp(tab[i].t, t, n)) { tab[i].fd = fd; return; }
	}
}

static void drop(int fd)
{
	struct cl *c = &cls[fd];
	if (!c->open) return;
	c->open = 0;
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	c->carry_len = c->out_len = c->out_off = 0;
}

static void flush(int fd)
{
	struct cl *c = &cls[fd];
	c->dirty = 0;
	while (c->open && c->out_off < c->out_len) {
		ssize_t r = write(fd, c->out + c->out_off, c->out_len - c->out_off);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) {
				struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.fd = fd };
				epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
				return;
			}
			drop(fd);
			return;
		}
		c->out_off += (size_t)r;
	}
	c->out_off = c->out_len = 0;
}

static void send_to(int fd, const uint8_t *p, size_t n)
{
	struct cl *c = &cls[fd];
	if (!c->open) return;
	int had = c->out_len > c->out_off;
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = realloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	if (had) return; /* waiting for EPOLLOUT */
	if (!batch) { flush(fd); return; }
	if (!c->dirty) { c->dirty = 1; dirty_list[ndirty++] = fd; }
}

static void packet(int fd, const uint8_t *p, size_t n, size_t hl)
{
	uint8_t type = p[0] >> 4;
	const uint8_t *v = p + hl;
	if (type == 1) {
		static const uint8_t ack[] = { 0x20, 2, 0, 0 };
		send_to(fd, ack, 4);
	} else if (type == 8) {
		size_t tl = (size_t)v[2] << 8 | v[3];
		if (tl >= 2 && v[4 + tl - 1] == '+' && v[4 + tl - 2] == '/') { wild = strndup((const char *)v + 4, tl - 1); wild_len = tl - 1; wild_fd = fd; }
		else insert(v + 4, tl, fd);
		uint8_t ack[] = { 0x90, 3, v[0], v[1], v[4 + tl] & 3 };
		send_to(fd, ack, 5);
	} else if (type == 3) {
		size_t tl = (size_t)v[0] << 8 | v[1];
		int to = lookup(v + 2, tl);
		if (to < 0 && wild && tl > wild_len && !memcmp(v + 2, wild, wild_len)) to = wild_fd;
		if (to >= 0) send_to(to, p, n);
		if ((p[0] >> 1 & 3) == 1) {
			uint8_t ack[] = { 0x40, 2, v[2 + tl], v[3 + tl] };
			send_to(fd, ack, 4);
		}
	} else if (type == 12) {
		static const uint8_t r[] = { 0xd0, 0 };
		send_to(fd, r, 2);
	} else if (type == 14) {
		drop(fd);
	}
}

static void consume(int fd, const uint8_t *b, size_t n)
{
	struct cl *c = &cls[fd];
	const uint8_t *d = b;
	size_t len = n;
	if (c->carry_len) {
		if (c->carry_len + n > c->carry_cap) {
			c->carry_cap = (c->carry_len + n) * 2;
			c->carry = realloc(c->carry, c->carry_cap);
		}
		memcpy(c->carry + c->carry_len, b, n);
		c->carry_len += n;
		d = c->carry; len = c->carry_len;
	}
	size_t off = 0;
	while (off + 2 <= len && c->open) {
		size_t rl = 0, i = 1; int mul = 0, ok = 0;
		while (off + i < len && i <= 4) {
			rl |= (size_t)(d[off + i] & 127) << mul;
			mul += 7;
			if (!(d[off + i++] & 128)) { ok = 1; break; }
		}
		if (!ok || off + i + rl > len) break;
		packet(fd, d + off, i + rl, i);
		off += i + rl;
	}
	if (!c->open) return;
	size_t rest = len - off;
	if (rest) {
		if (d != c->carry) {
			if (rest > c->carry_cap) { c->carry_cap = rest * 2; c->carry = realloc(c->carry, c->carry_cap); }
			memcpy(c->carry, d + off, rest);
		} else memmove(c->carry, d + off, rest);
	}
	c->carry_len = rest;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 18850;
	batch = !(argc > 2 && !strcmp(argv[2], "direct"));
	signal(SIGTERM, on_sig); signal(SIGINT, on_sig); signal(SIGPIPE, SIG_IGN);
	alarm(600);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (void *)&a, sizeof a) || listen(ls, 4096)) { perror("listen"); return 1; }
	epfd = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls };
	epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
	static uint8_t rbuf[65536];
	struct epoll_event evs[1024];
	while (!stop) {
		int n = epoll_wait(epfd, evs, 1024, 1000);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				for (;;) {
					int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
					if (s < 0) break;
					if (s >= MAXFD) { close(s); continue; }
					setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					cls[s].open = 1;
					struct epoll_event e = { .events = EPOLLIN, .data.fd = s };
					epoll_ctl(epfd, EPOLL_CTL_ADD, s, &e);
				}
				continue;
			}
			if (!cls[fd].open) continue;
			if (evs[i].events & EPOLLOUT) {
				flush(fd);
				if (cls[fd].open && cls[fd].out_len == 0) {
					struct epoll_event e = { .events = EPOLLIN, .data.fd = fd };
					epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e);
				}
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r = read(fd, rbuf, sizeof rbuf);
				if (r > 0) consume(fd, rbuf, (size_t)r);
				else if (r == 0 || (errno != EAGAIN && errno != EINTR)) drop(fd);
			}
		}
		for (int i = 0; i < ndirty; i++) if (cls[dirty_list[i]].dirty) flush(dirty_list[i]);
		ndirty = 0;
	}
	return 0;
}

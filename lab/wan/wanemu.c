/* tl-wanemu: teleradlab's userspace WAN emulator (see lab/wan/userspace.py for the design).
 *
 * Runs inside the WAN router node, whose kernel forwarding is switched off, and forwards IP
 * packets between its two WAN interfaces itself: AF_PACKET sockets read batches (recvmmsg)
 * straight into a FIFO ring per direction; each packet gets a release time when it arrives
 * (rate: serialisation behind the previous packet; then delay + jitter, never earlier than the
 * packet before it, so nothing is reordered unless asked), and due packets leave in batches
 * (sendmmsg). Release times are non-decreasing, so a FIFO is the whole timer wheel.
 *
 * usage: tl-wanemu run --stats FILE --if0 NAME --mac0 PEERMAC --if1 NAME --mac1 PEERMAC
 *                  [--local ADDR]... [--seed N] [--mtu N] --p01 PARAMS --p10 PARAMS
 * The rate counts IP packet bytes (the Ethernet header is not part of a WAN's line rate).
 * PARAMS: delay_ns,jitter_ns,loss,loss_corr,rate_bps,limit,reorder,duplicate,corrupt
 * (probabilities as fractions 0..1; rate 0 = unlimited).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_MTU 65535
#define MAX_LOCAL 16

struct params {
    int64_t delay, jitter;
    double loss, loss_corr, rate_bps;
    uint32_t limit;
    double reorder, dup, corrupt;
};

struct counters {
    uint64_t rx, tx, lost, overlimit, duplicated, corrupted, reordered, ttl, send_errors;
    uint64_t oversize;
    uint32_t max_backlog;
};

struct dir {
    int in_fd, out_fd;
    uint8_t src_mac[6], dst_mac[6];
    struct params p;
    uint8_t *buf;      /* cap slots of slot_size bytes */
    int64_t *when;     /* release time per slot */
    uint32_t *len;
    uint8_t *copies;   /* 2: a duplicated packet, sent twice */
    uint32_t cap, head, n;
    int64_t link_free, last_release;
    int last_lost;
    struct counters c;
};

static struct dir dirs[2];
static uint8_t local4[MAX_LOCAL][4], local6[MAX_LOCAL][16];
static int nlocal4, nlocal6;
static volatile sig_atomic_t stop_flag;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static size_t slot_size = 2048; /* a frame of the WAN's MTU (--mtu) plus its header, rounded */
static uint8_t *scratch;

static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double uniform(void) { /* xorshift64*: fast, good enough for impairments */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void die(const char *what) {
    fprintf(stderr, "tl-wanemu: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int parse_mac(const char *s, uint8_t *mac) {
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return 0;
}

static int parse_params(const char *s, struct params *p) {
    long long d, j;
    unsigned lim;
    int n = sscanf(s, "%lld,%lld,%lf,%lf,%lf,%u,%lf,%lf,%lf", &d, &j, &p->loss, &p->loss_corr,
                   &p->rate_bps, &lim, &p->reorder, &p->dup, &p->corrupt);
    p->delay = d;
    p->jitter = j;
    p->limit = lim;
    return n == 9 && lim > 0 ? 0 : -1;
}

static int open_socket(const char *ifname, uint8_t *own_mac) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (fd < 0) die("socket(AF_PACKET)");
    unsigned idx = if_nametoindex(ifname);
    if (!idx) die(ifname);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)idx};
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
    int one = 1, size = 16 << 20;
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    /* The emulator times every packet itself: its sends skip the (empty) qdisc layer. */
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    memcpy(own_mac, ifr.ifr_hwaddr.sa_data, 6);
    return fd;
}

/* Is this frame an IP packet to forward? Not to one of our addresses, not link-local or
 * multicast (neighbour discovery stays with the kernel). Decrements TTL / hop limit. */
static int forwardable(uint8_t *f, uint32_t len, struct counters *c) {
    if (len < 14) return 0;
    uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
    uint8_t *ip = f + 14;
    if (type == ETHERTYPE_IP && len >= 34) {
        for (int i = 0; i < nlocal4; i++)
            if (!memcmp(ip + 16, local4[i], 4)) return 0;
        if (ip[16] >= 224) return 0;
        if (ip[8] <= 1) { c->ttl++; return 0; }
        ip[8]--; /* RFC 1624 incremental checksum update: TTL is the high byte of word 4 */
        uint32_t sum = (uint32_t)(ip[10] << 8 | ip[11]) + 0x0100;
        sum = (sum & 0xffff) + (sum >> 16);
        ip[10] = (uint8_t)(sum >> 8);
        ip[11] = (uint8_t)sum;
        return 1;
    }
    if (type == ETHERTYPE_IPV6 && len >= 54) {
        uint8_t *dst = ip + 24;
        for (int i = 0; i < nlocal6; i++)
            if (!memcmp(dst, local6[i], 16)) return 0;
        if (dst[0] == 0xff || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80)) return 0;
        if (ip[7] <= 1) { c->ttl++; return 0; }
        ip[7]--;
        return 1;
    }
    return 0;
}

static int lost(struct dir *d) {
    /* Two-state Markov chain: long-run loss rate exactly p, lag-1 correlation exactly c. */
    double p = d->p.loss, c = d->p.loss_corr;
    if (p <= 0) return 0;
    double q = d->last_lost ? c + (1 - c) * p : (1 - c) * p;
    d->last_lost = uniform() < q;
    return d->last_lost;
}

static int64_t release_time(struct dir *d, uint32_t len, int64_t now, int *immediate) {
    int64_t t = now;
    if (d->p.rate_bps > 0) {
        int64_t start = d->link_free > now ? d->link_free : now;
        d->link_free = start + (int64_t)((double)(len - 14) * 8e9 / d->p.rate_bps);
        t = d->link_free;
    }
    if (d->p.reorder > 0 && uniform() < d->p.reorder) {
        *immediate = 1; /* netem's reorder: this packet skips the delay */
        return t;
    }
    t += d->p.delay;
    if (d->p.jitter) t += (int64_t)((uniform() * 2 - 1) * (double)d->p.jitter);
    if (t < d->last_release) t = d->last_release;
    d->last_release = t;
    return t;
}

static void send_one(struct dir *d, uint8_t *f, uint32_t len) {
    if (send(d->out_fd, f, len, 0) < 0) d->c.send_errors++;
    else d->c.tx++;
}

static uint8_t *slot(struct dir *d, uint32_t i) { return d->buf + (size_t)(i % d->cap) * slot_size; }

/* Accept the packet received into the ring's next free slot: decide its fate, enqueue it. */
static void admit(struct dir *d, uint32_t len, int64_t now) {
    uint32_t tail = d->head + d->n;
    uint8_t *f = slot(d, tail);
    d->c.rx++;
    if (!forwardable(f, len, &d->c)) return;
    if (d->n >= d->p.limit) { d->c.overlimit++; return; }
    if (lost(d)) { d->c.lost++; return; }
    memcpy(f, d->dst_mac, 6);
    memcpy(f + 6, d->src_mac, 6);
    if (d->p.corrupt > 0 && uniform() < d->p.corrupt && len > 14) {
        uint32_t bit = (uint32_t)(uniform() * (double)((len - 14) * 8));
        f[14 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        d->c.corrupted++;
    }
    int immediate = 0;
    int64_t t = release_time(d, len, now, &immediate);
    int copies = d->p.dup > 0 && uniform() < d->p.dup ? 2 : 1;
    if (copies == 2) d->c.duplicated++;
    if (immediate) {
        d->c.reordered++;
        for (int i = 0; i < copies; i++) send_one(d, f, len);
        return;
    }
    d->when[tail % d->cap] = t;
    d->len[tail % d->cap] = len;
    d->copies[tail % d->cap] = (uint8_t)copies;
    d->n++;
    if (d->n > d->c.max_backlog) d->c.max_backlog = d->n;
}

static void receive(struct dir *d) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int rounds = 0; rounds < 8; rounds++) {
        uint32_t room = d->cap - d->n;
        int want = room < BATCH ? (int)room : BATCH;
        if (want <= 0) { /* ring full: read and drop, so the socket never backs up */
            ssize_t r = recv(d->in_fd, scratch, slot_size, MSG_DONTWAIT);
            if (r < 0) return;
            d->c.rx++;
            d->c.overlimit++;
            continue;
        }
        for (int i = 0; i < want; i++) {
            iov[i].iov_base = slot(d, d->head + d->n + (uint32_t)i);
            iov[i].iov_len = slot_size;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(d->in_fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
        if (got <= 0) return;
        int64_t now = now_ns();
        for (int i = 0; i < got; i++) {
            uint8_t *src = iov[i].iov_base, *dst = slot(d, d->head + d->n);
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) { /* larger than --mtu: never forward */
                d->c.rx++;
                d->c.oversize++;
                continue;
            }
            if (src != dst) memmove(dst, src, msgs[i].msg_len); /* an earlier one was dropped */
            admit(d, msgs[i].msg_len, now);
        }
        if (got < want) return;
    }
}

/* Send every due packet, in batches; returns the next release time (or -1 if empty). */
static int64_t flush(struct dir *d, int64_t now) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint32_t of[BATCH]; /* the ring slot of each message */
    while (d->n) {
        int k = 0;
        for (uint32_t s = 0; s < d->n && k + 1 < BATCH; s++) {
            uint32_t i = (d->head + s) % d->cap;
            if (d->when[i] > now) break;
            for (int c = 0; c < d->copies[i]; c++, k++) {
                iov[k].iov_base = slot(d, i);
                iov[k].iov_len = d->len[i];
                memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
                msgs[k].msg_hdr.msg_iov = &iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
                of[k] = s;
            }
        }
        if (!k) return d->when[d->head % d->cap];
        int sent = sendmmsg(d->out_fd, msgs, (unsigned)k, 0);
        if (sent <= 0) { /* count and discard one, so a persistent error cannot stall us */
            d->c.send_errors++;
            sent = 1;
        } else {
            d->c.tx += (uint64_t)sent;
        }
        uint32_t done = of[sent - 1] + 1; /* slots whose every copy went out */
        if (sent < k && of[sent] == of[sent - 1]) {
            d->copies[(d->head + of[sent]) % d->cap] = 1; /* first copy sent, one to go */
            done--;
        }
        d->head = (d->head + done) % d->cap;
        d->n -= done;
    }
    return -1;
}

static void write_stats(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "{\"pid\": %d, \"directions\": [", getpid());
    for (int i = 0; i < 2; i++) {
        struct counters *c = &dirs[i].c;
        fprintf(f, "%s{\"rx\": %llu, \"tx\": %llu, \"lost\": %llu, \"overlimit\": %llu, "
                "\"duplicated\": %llu, \"corrupted\": %llu, \"reordered\": %llu, "
                "\"ttl_expired\": %llu, \"send_errors\": %llu, \"oversize\": %llu, "
                "\"backlog\": %u, "
                "\"max_backlog\": %u}", i ? ", " : "", (unsigned long long)c->rx,
                (unsigned long long)c->tx, (unsigned long long)c->lost,
                (unsigned long long)c->overlimit, (unsigned long long)c->duplicated,
                (unsigned long long)c->corrupted, (unsigned long long)c->reordered,
                (unsigned long long)c->ttl, (unsigned long long)c->send_errors,
                (unsigned long long)c->oversize, dirs[i].n,
                c->max_backlog);
    }
    fprintf(f, "]}\n");
    fclose(f);
    rename(tmp, path);
}

static void setup_dir(struct dir *d) {
    d->cap = d->p.limit + BATCH;
    d->buf = malloc((size_t)d->cap * slot_size); /* pages are only touched when used */
    d->when = calloc(d->cap, sizeof *d->when);
    d->len = calloc(d->cap, sizeof *d->len);
    d->copies = calloc(d->cap, 1);
    if (!d->buf || !d->when || !d->len || !d->copies) die("malloc");
}

static int add_local(const char *s) {
    if (strchr(s, ':')) {
        if (nlocal6 >= MAX_LOCAL || inet_pton(AF_INET6, s, local6[nlocal6]) != 1) return -1;
        nlocal6++;
    } else {
        if (nlocal4 >= MAX_LOCAL || inet_pton(AF_INET, s, local4[nlocal4]) != 1) return -1;
        nlocal4++;
    }
    return 0;
}

static int usage(const char *why) {
    fprintf(stderr, "tl-wanemu: %s\nusage: tl-wanemu run --stats FILE --if0 IF --mac0 MAC "
            "--if1 IF --mac1 MAC [--local ADDR]... [--seed N] [--mtu N] --p01 P --p10 P\n", why);
    return 64;
}

static int run(int argc, char **argv) {
    const char *stats = NULL, *ifs[2] = {NULL, NULL};
    uint8_t peer[2][6];
    int have = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--stats")) stats = v;
        else if (!strcmp(k, "--if0")) ifs[0] = v;
        else if (!strcmp(k, "--if1")) ifs[1] = v;
        else if (!strcmp(k, "--mac0") && !parse_mac(v, peer[0])) have |= 1;
        else if (!strcmp(k, "--mac1") && !parse_mac(v, peer[1])) have |= 2;
        else if (!strcmp(k, "--p01") && !parse_params(v, &dirs[0].p)) have |= 4;
        else if (!strcmp(k, "--p10") && !parse_params(v, &dirs[1].p)) have |= 8;
        else if (!strcmp(k, "--mtu")) {
            long mtu = strtol(v, NULL, 10);
            if (mtu < 68 || mtu > MAX_MTU) return usage("--mtu: 68 to 65535");
            slot_size = ((size_t)mtu + 14 + 63) & ~(size_t)63;
        }
        else if (!strcmp(k, "--seed")) rng_state ^= strtoull(v, NULL, 0) * 0x9e3779b97f4a7c15ULL;
        else if (!strcmp(k, "--local")) { if (add_local(v)) return usage(v); }
        else return usage(k);
    }
    if (!stats || !ifs[0] || !ifs[1] || have != 15) return usage("missing or bad arguments");
    uint8_t own[2][6];
    int fd0 = open_socket(ifs[0], own[0]), fd1 = open_socket(ifs[1], own[1]);
    /* direction 0: in on if0, out on if1 towards peer 1; direction 1 the other way */
    dirs[0].in_fd = fd0; dirs[0].out_fd = fd1;
    memcpy(dirs[0].src_mac, own[1], 6); memcpy(dirs[0].dst_mac, peer[1], 6);
    dirs[1].in_fd = fd1; dirs[1].out_fd = fd0;
    memcpy(dirs[1].src_mac, own[0], 6); memcpy(dirs[1].dst_mac, peer[0], 6);
    scratch = malloc(slot_size);
    if (!scratch) die("malloc");
    setup_dir(&dirs[0]);
    setup_dir(&dirs[1]);
    prctl(PR_SET_TIMERSLACK, 1UL);
    /* Release times are only as good as the wake-ups: on a busy machine a normal task can wait
     * tens of ms for a CPU. A modest real-time priority fixes that; the kernel's RT throttling
     * still leaves 5% of each CPU to everything else. */
    struct sched_param sp = {.sched_priority = 20};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
        fprintf(stderr, "tl-wanemu: no real-time priority (%s); timing may suffer under load\n",
                strerror(errno));
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    write_stats(stats);
    fprintf(stderr, "tl-wanemu: forwarding between %s and %s\n", ifs[0], ifs[1]);
    struct pollfd pfd[2] = {{.fd = fd0, .events = POLLIN}, {.fd = fd1, .events = POLLIN}};
    int64_t last_stats = now_ns();
    while (!stop_flag) {
        int64_t now = now_ns(), next = -1;
        for (int i = 0; i < 2; i++) {
            int64_t t = flush(&dirs[i], now);
            if (t >= 0 && (next < 0 || t < next)) next = t;
        }
        if (now - last_stats > 1000000000LL) { write_stats(stats); last_stats = now; }
        int64_t wait = next < 0 ? 500000000LL : next - now;
        if (wait > 500000000LL) wait = 500000000LL;
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        if (ppoll(pfd, 2, &ts, NULL) < 0 && errno != EINTR) die("ppoll");
        for (int i = 0; i < 2; i++) {
            if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err == ENETDOWN || err == ENODEV || err == ENXIO || pfd[i].revents & POLLNVAL) {
                    /* the interface is gone: stop rather than spin at real-time priority */
                    fprintf(stderr, "tl-wanemu: %s: %s\n", ifs[i], strerror(err ? err : EBADF));
                    write_stats(stats);
                    return 3;
                }
            }
            if (pfd[i].revents & POLLIN) receive(&dirs[i]);
        }
    }
    write_stats(stats);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "run")) return run(argc - 2, argv + 2);
    return usage("unknown command");
}

/*
 * afxdp_fwd: a two-port L2 forwarder over AF_XDP, a measurement probe for
 * issue 11 ("AF_XDP on a veth pair is an optional port type worth a
 * measurement"). Not part of vswitchd: it has no switching, no gateway and
 * no NAT. Every frame received on one interface is copied to the other, so
 * what it delivers is an upper bound for an AF_XDP port type on veths.
 *
 * Each interface gets its own UMEM (4096 frames of 4 KiB), an AF_XDP socket
 * on queue 0 in copy mode (veth has no zero-copy) with libxdp's default
 * program (redirect to the socket), native XDP. Idle, it spins 200 us (as
 * vswitchd's default busy-poll window) and then sleeps in poll().
 *
 * Build:  apt-get install -y libxdp-dev libbpf-dev
 *         cc -O2 -o afxdp_fwd scripts/probes/afxdp_fwd.c -lxdp -lbpf
 * Run:    afxdp_fwd IFACE_A IFACE_B     (until SIGTERM/SIGINT; prints counts)
 * Used by: python3 scripts/e2e_bench.py --peers --afxdp-probe ./afxdp_fwd
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>

#define NFRAMES 4096
#define FSIZE 4096u
#define RING 2048
#define BATCH 32 /* the kernel's copy-mode xmit sends at most 32 per kick */

struct port {
	const char *ifname;
	char *area;
	struct xsk_umem *umem;
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	struct xsk_socket *xsk;
	uint64_t free_tx[NFRAMES / 2];
	uint32_t nfree;
	uint64_t rx_frames, tx_frames, drops, kicks;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what, const char *ifname, int err)
{
	fprintf(stderr, "afxdp_fwd: %s %s: %s\n", what, ifname, strerror(err < 0 ? -err : err));
	exit(1);
}

static void open_port(struct port *p, const char *ifname)
{
	struct xsk_umem_config ucfg = {
		.fill_size = RING, .comp_size = RING, .frame_size = FSIZE, .frame_headroom = 0, .flags = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = RING, .tx_size = RING, .libxdp_flags = 0,
		.xdp_flags = XDP_FLAGS_DRV_MODE, .bind_flags = XDP_COPY,
	};
	uint32_t idx, i;
	int err;

	p->ifname = ifname;
	p->area = mmap(NULL, (size_t)NFRAMES * FSIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->area == MAP_FAILED)
		die("mmap umem for", ifname, errno);
	err = xsk_umem__create(&p->umem, p->area, (uint64_t)NFRAMES * FSIZE, &p->fq, &p->cq, &ucfg);
	if (err)
		die("xsk_umem__create", ifname, err);
	err = xsk_socket__create(&p->xsk, ifname, 0, p->umem, &p->rx, &p->tx, &scfg);
	if (err)
		die("xsk_socket__create", ifname, err);
	/* The first half of the UMEM receives, the second half transmits. */
	if (xsk_ring_prod__reserve(&p->fq, NFRAMES / 2, &idx) != NFRAMES / 2)
		die("fill ring", ifname, ENOSPC);
	for (i = 0; i < NFRAMES / 2; i++)
		*xsk_ring_prod__fill_addr(&p->fq, idx + i) = (uint64_t)i * FSIZE;
	xsk_ring_prod__submit(&p->fq, NFRAMES / 2);
	for (i = 0; i < NFRAMES / 2; i++)
		p->free_tx[i] = (uint64_t)(NFRAMES / 2 + i) * FSIZE;
	p->nfree = NFRAMES / 2;
}

/* Takes back the transmit frames the kernel is done with. */
static void complete(struct port *p)
{
	uint32_t idx, n = xsk_ring_cons__peek(&p->cq, RING, &idx), i;

	for (i = 0; i < n; i++)
		p->free_tx[p->nfree++] = *xsk_ring_cons__comp_addr(&p->cq, idx + i) & ~(uint64_t)(FSIZE - 1);
	xsk_ring_cons__release(&p->cq, n);
}

/* Moves up to BATCH frames from src's receive ring to dst's transmit ring. */
static uint32_t forward(struct port *src, struct port *dst)
{
	uint32_t idx_rx, idx_tx, idx_fq, rcvd, n, i;

	complete(dst);
	rcvd = xsk_ring_cons__peek(&src->rx, BATCH, &idx_rx);
	if (!rcvd)
		return 0;
	n = rcvd < dst->nfree ? rcvd : dst->nfree;
	n = xsk_ring_prod__reserve(&dst->tx, n, &idx_tx);
	for (i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&src->rx, idx_rx + i);
		struct xdp_desc *t = xsk_ring_prod__tx_desc(&dst->tx, idx_tx + i);
		uint64_t addr = dst->free_tx[--dst->nfree];

		memcpy(dst->area + addr, xsk_umem__get_data(src->area, d->addr), d->len);
		t->addr = addr;
		t->len = d->len;
	}
	src->rx_frames += rcvd;
	dst->drops += rcvd - n;
	if (n) {
		xsk_ring_prod__submit(&dst->tx, n);
		dst->tx_frames += n;
		dst->kicks++;
		while (sendto(xsk_socket__fd(dst->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
		       (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS) && !stop)
			complete(dst);
	}
	/* The received frames go back to the fill ring, as they were. */
	while (xsk_ring_prod__reserve(&src->fq, rcvd, &idx_fq) != rcvd)
		;
	for (i = 0; i < rcvd; i++)
		*xsk_ring_prod__fill_addr(&src->fq, idx_fq + i) =
			xsk_ring_cons__rx_desc(&src->rx, idx_rx + i)->addr & ~(uint64_t)(FSIZE - 1);
	xsk_ring_prod__submit(&src->fq, rcvd);
	xsk_ring_cons__release(&src->rx, rcvd);
	return rcvd;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static struct port a, b;
	uint64_t last_work;

	if (argc != 3) {
		fprintf(stderr, "usage: afxdp_fwd IFACE_A IFACE_B\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	open_port(&a, argv[1]);
	open_port(&b, argv[2]);
	printf("ready\n");
	fflush(stdout);
	last_work = now_ns();
	while (!stop) {
		uint32_t work = forward(&a, &b) + forward(&b, &a);

		if (work) {
			last_work = now_ns();
		} else if (now_ns() - last_work > 200000) {
			struct pollfd pfd[2] = {
				{ .fd = xsk_socket__fd(a.xsk), .events = POLLIN },
				{ .fd = xsk_socket__fd(b.xsk), .events = POLLIN },
			};
			poll(pfd, 2, 100);
			last_work = now_ns();
		}
	}
	printf("%s: rx %llu tx %llu drops %llu kicks %llu\n", a.ifname,
	       (unsigned long long)a.rx_frames, (unsigned long long)a.tx_frames,
	       (unsigned long long)a.drops, (unsigned long long)a.kicks);
	printf("%s: rx %llu tx %llu drops %llu kicks %llu\n", b.ifname,
	       (unsigned long long)b.rx_frames, (unsigned long long)b.tx_frames,
	       (unsigned long long)b.drops, (unsigned long long)b.kicks);
	xsk_socket__delete(a.xsk);
	xsk_socket__delete(b.xsk);
	xsk_umem__delete(a.umem);
	xsk_umem__delete(b.umem);
	return 0;
}

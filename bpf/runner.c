/*
 * dplab-bpf-run: run packets through one program of a BPF object with BPF_PROG_TEST_RUN, in order,
 * maps kept between packets (as a live kernel keeps them), and write each packet's verdict and the
 * kernel's own run time. Nothing is attached to an interface; the programs only ever see the
 * packets given to them here.
 *
 *   dplab-bpf-run OBJ PROG PACKETS RESULTS REPEAT PASSES [MAPS] [DUMP] [OUT]
 *
 * OBJ      a BPF object (clang -O2 -g -target bpf)
 * PROG     the program's name in it (an XDP or a tc program)
 * PACKETS  records of: u32 length, u32 0, u64 time in ns, the frame, padding to 8 bytes
 * RESULTS  written: per pass, per packet: u32 the program's return value, u32 its run time in ns
 *          (the kernel's duration: its own clock around REPEAT runs, divided by REPEAT)
 * REPEAT   runs per packet in the kernel (1 for a stateful program: a packet is seen once)
 * PASSES   times the whole sequence is run; every pass loads the object afresh (empty maps)
 * MAPS     text lines, applied to every fresh load:
 *            max MAP N          the map's max_entries (before loading)
 *            set MAP KEYHEX VALUEHEX
 * DUMP     after the last pass, every entry of this map is printed to stdout as "KEYHEX VALUEHEX"
 *          ("" for none)
 * OUT      the packets as the program left them (the test run's data_out), first pass, in the
 *          PACKETS format (time 0): for a model that rewrites packets (dnat)
 *
 * The packet's time goes in as 8 bytes of XDP metadata in front of it (data_meta) for an XDP
 * program, as skb->tstamp for a tc one: programs with timeouts or rate limits run on the
 * capture's clock.
 *
 * Exit status: 0 done; 1 usage or unreadable file; 2 the kernel refused (the reason on stderr, one
 * line, the verifier's last words included).
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META 8

static char logbuf[1 << 16];
static size_t loglen;

static int on_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	if (loglen < sizeof(logbuf) - 1) {
		int n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
		if (n > 0) loglen += (size_t)n < sizeof(logbuf) - loglen ? (size_t)n : sizeof(logbuf) - loglen - 1;
	}
	return 0;
}

/* The verifier's own verdict: the last lines of libbpf's log that are not libbpf's framing. */
static const char *log_tail(void)
{
	static char out[600];
	const char *keep[3] = { 0 };
	size_t klen[3] = { 0 };
	for (char *line = logbuf; line < logbuf + loglen;) {
		char *nl = memchr(line, '\n', logbuf + loglen - line);
		size_t n = nl ? (size_t)(nl - line) : (size_t)(logbuf + loglen - line);
		if (n && strncmp(line, "libbpf:", 7) && strncmp(line, "--", 2) && strncmp(line, "processed", 9) &&
		    strncmp(line, "verification time", 17) && strncmp(line, "stack depth", 11) && line[0] != ';') {
			keep[0] = keep[1], klen[0] = klen[1];
			keep[1] = keep[2], klen[1] = klen[2];
			keep[2] = line, klen[2] = n;
		}
		line += n + 1;
	}
	size_t k = 0;
	for (int i = 0; i < 3; i++) {
		if (!keep[i]) continue;
		for (size_t j = 0; j < klen[i] && k < sizeof(out) - 3; j++) out[k++] = keep[i][j];
		if (k < sizeof(out) - 3) out[k++] = ';', out[k++] = ' ';
	}
	out[k] = 0;
	return out;
}

static int fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("dplab-bpf-run: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) fail(1, "cannot read %s: %s", path, strerror(errno));
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
		size_t r = fread(buf + n, 1, cap - n, f);
		if (r == 0) break;
		n += r;
	}
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

static int hexbytes(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > max) return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
		out[i] = (unsigned char)v;
	}
	return (int)(n / 2);
}

static struct bpf_object *load(const char *objpath, char *maps, const char *progname, int *prog_fd, int *xdp)
{
	loglen = 0;
	struct bpf_object *obj = bpf_object__open_file(objpath, NULL);
	if (!obj) fail(1, "cannot open BPF object %s: %s", objpath, strerror(errno));
	/* max lines first: they apply before the load */
	char *copy = strdup(maps ? maps : "");
	for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64];
		unsigned long n;
		if (sscanf(line, "max %63s %lu", name, &n) == 2) {
			struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
			if (!m) fail(1, "no map %s in %s", name, objpath);
			if (bpf_map__set_max_entries(m, (unsigned)n)) fail(1, "cannot size map %s", name);
		}
	}
	free(copy);
	if (bpf_object__load(obj)) {
		if (getenv("DPLAB_BPF_LOG")) fputs(logbuf, stderr); /* the whole verifier log */
		fail(2, "the kernel refused %s (%s): %s", objpath, strerror(errno), log_tail());
	}
	struct bpf_program *p = bpf_object__find_program_by_name(obj, progname);
	if (!p) fail(1, "no program %s in %s", progname, objpath);
	*prog_fd = bpf_program__fd(p);
	*xdp = bpf_program__type(p) == BPF_PROG_TYPE_XDP;
	copy = strdup(maps ? maps : "");
	for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64], khex[1024], vhex[4096];
		if (sscanf(line, "set %63s %1023s %4095s", name, khex, vhex) != 3) continue;
		struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
		if (!m) fail(1, "no map %s in %s", name, objpath);
		unsigned char k[512], v[2048];
		int kl = hexbytes(khex, k, sizeof k), vl = hexbytes(vhex, v, sizeof v);
		if (kl != (int)bpf_map__key_size(m) || vl != (int)bpf_map__value_size(m))
			fail(1, "map %s: key %d bytes, value %d bytes given; it wants %u and %u", name, kl, vl,
			     bpf_map__key_size(m), bpf_map__value_size(m));
		if (bpf_map_update_elem(bpf_map__fd(m), k, v, BPF_ANY))
			fail(2, "cannot fill map %s: %s", name, strerror(errno));
	}
	free(copy);
	return obj;
}

int main(int argc, char **argv)
{
	if (argc < 7 || argc > 10)
		fail(1, "usage: dplab-bpf-run OBJ PROG PACKETS RESULTS REPEAT PASSES [MAPS] [DUMP] [OUT]");
	const char *objpath = argv[1], *progname = argv[2];
	unsigned repeat = (unsigned)strtoul(argv[5], NULL, 10);
	unsigned passes = (unsigned)strtoul(argv[6], NULL, 10);
	if (repeat < 1 || passes < 1) fail(1, "REPEAT and PASSES must be at least 1");
	size_t maplen = 0;
	char *maps = argc > 7 && argv[7][0] ? slurp(argv[7], &maplen) : NULL;
	const char *dump = argc > 8 && argv[8][0] ? argv[8] : NULL;
	FILE *rewritten = NULL;
	if (argc > 9 && !(rewritten = fopen(argv[9], "wb"))) fail(1, "cannot write %s: %s", argv[9], strerror(errno));
	libbpf_set_print(on_libbpf);

	size_t plen;
	unsigned char *pk = slurp(argv[3], &plen);
	size_t count = 0;
	for (size_t at = 0; at + 16 <= plen;) {
		uint32_t len;
		memcpy(&len, pk + at, 4);
		at += 16 + ((len + 7) & ~7u);
		count++;
	}
	FILE *out = fopen(argv[4], "wb");
	if (!out) fail(1, "cannot write %s: %s", argv[4], strerror(errno));
	uint32_t *res = malloc(8 * (count ? count : 1));
	unsigned char *frame = malloc(META + 262144 + 64);
	unsigned char *after = malloc(META + 262144 + 64);

	struct bpf_object *obj = NULL;
	for (unsigned pass = 0; pass < passes; pass++) {
		int fd, xdp;
		if (obj) bpf_object__close(obj);
		obj = load(objpath, maps, progname, &fd, &xdp);
		size_t i = 0;
		for (size_t at = 0; at + 16 <= plen; i++) {
			uint32_t len;
			uint64_t ts;
			memcpy(&len, pk + at, 4);
			memcpy(&ts, pk + at + 8, 8);
			unsigned char *src = pk + at + 16;
			at += 16 + ((len + 7) & ~7u);
			struct xdp_md xctx = { .data = META, .data_end = META + len };
			struct __sk_buff sctx = { .tstamp = ts };
			LIBBPF_OPTS(bpf_test_run_opts, o, .repeat = repeat);
			if (xdp) {
				/* the time as 8 bytes of metadata in front of the frame */
				memcpy(frame, &ts, META);
				memcpy(frame + META, src, len);
				o.data_in = frame, o.data_size_in = META + len;
				o.ctx_in = &xctx, o.ctx_size_in = sizeof xctx;
			} else {
				/* tc: the time in skb->tstamp */
				o.data_in = src, o.data_size_in = len;
				o.ctx_in = &sctx, o.ctx_size_in = sizeof sctx;
			}
			if (rewritten && pass == 0) o.data_out = after, o.data_size_out = META + 262144;
			if (bpf_prog_test_run_opts(fd, &o))
				fail(2, "BPF_PROG_TEST_RUN failed on packet %zu: %s", i + 1, strerror(errno));
			res[2 * i] = o.retval;
			res[2 * i + 1] = o.duration;
			if (rewritten && pass == 0) {
				/* an XDP program's data_out holds the metadata in front */
				uint32_t skip = xdp ? META : 0, n = o.data_size_out > skip ? o.data_size_out - skip : 0;
				uint64_t zero = 0, pad = 0;
				fwrite(&n, 4, 1, rewritten);
				fwrite(&zero, 4, 1, rewritten);
				fwrite(&zero, 8, 1, rewritten);
				fwrite(after + skip, 1, n, rewritten);
				fwrite(&pad, 1, ((n + 7) & ~7u) - n, rewritten);
			}
		}
		if (fwrite(res, 8, count, out) != count) fail(1, "cannot write %s", argv[4]);
	}
	if (fclose(out)) fail(1, "cannot write %s", argv[4]);
	if (rewritten && fclose(rewritten)) fail(1, "cannot write %s", argv[9]);
	if (dump && obj) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, dump);
		if (!m) fail(1, "no map %s", dump);
		int mfd = bpf_map__fd(m);
		unsigned ks = bpf_map__key_size(m), vs = bpf_map__value_size(m);
		unsigned char *k = malloc(ks), *next = malloc(ks), *v = malloc(vs);
		int more = bpf_map_get_next_key(mfd, NULL, next) == 0;
		while (more) {
			memcpy(k, next, ks);
			if (bpf_map_lookup_elem(mfd, k, v) == 0) {
				for (unsigned j = 0; j < ks; j++) printf("%02x", k[j]);
				putchar(' ');
				for (unsigned j = 0; j < vs; j++) printf("%02x", v[j]);
				putchar('\n');
			}
			more = bpf_map_get_next_key(mfd, k, next) == 0;
		}
	}
	if (obj) bpf_object__close(obj);
	return 0;
}

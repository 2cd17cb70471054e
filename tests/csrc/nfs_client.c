/*
 * strata-nfs-client: a small NFS client on libnfs 4.0 for Strata's end-to-end tests, for what
 * nfs-ls/nfs-cp/nfs-cat and qemu cannot do (DESIGN §8).
 *
 * Usage: strata-nfs-client URL COMMAND [ARGS...]
 *   URL is a libnfs URL of the export, e.g. nfs://127.0.0.1/strata?version=3 (or version=4).
 *   Paths are relative to the export root and start with '/'.
 *
 * Output: one "key=value ..." line per result on stdout. On failure a line
 * "error=<text> errno=<positive errno> [nfsstat=<n>]" and exit code 1; usage errors exit 2.
 * The exit codes and the errno values are what the tests assert.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

/* libnfs 4.0 returns this from nfs_get_fh() but keeps its definition private. */
struct nfs_fh {
	int len;
	char *val;
};

static struct nfs_context *nfs;
static int nfs_version = 3;

/* Prints `error="WHAT: MESSAGE" errno=N` (double quotes inside MESSAGE become single ones). */
static int fail(const char *what, int ret)
{
	const char *msg = nfs ? nfs_get_error(nfs) : NULL;
	char clean[512];
	snprintf(clean, sizeof clean, "%s: %s", what, msg && *msg ? msg : strerror(ret < 0 ? -ret : ret));
	for (char *p = clean; *p; p++)
		if (*p == '"' || *p == '\n')
			*p = '\'';
	printf("error=\"%s\" errno=%d\n", clean, ret < 0 ? -ret : ret);
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: strata-nfs-client URL COMMAND [ARGS...]\n"
		"commands:\n"
		"  stat PATH | lstat PATH           fileid size mode nlink uid gid used mtime type rdev\n"
		"  mknod PATH fifo|sock [OCTAL_MODE] | mknod PATH chr|blk MAJOR MINOR [OCTAL_MODE]\n"
		"                                   MKNOD (default mode 644)\n"
		"  write PATH OFFSET LEN SEED       pattern write (creates the file; fsync at the end)\n"
		"  write3 PATH OFFSET LEN SEED      one raw FILE_SYNC WRITE3 (v3), its nfsstat as is\n"
		"  verify PATH OFFSET LEN SEED|zero read and compare with the pattern (zero: all 0)\n"
		"  put PATH TEXT | cat PATH         small text files\n"
		"  mkdir PATH | rmdir PATH | unlink PATH | chmod PATH OCTAL_MODE\n"
		"  rename OLD NEW | link OLD NEW | symlink TARGET PATH | readlink PATH\n"
		"  truncate PATH SIZE\n"
		"  statfs PATH                      capacity (FSSTAT) and transfer limits (FSINFO)\n"
		"  create-excl PATH                 create(O_EXCL) (v3: GUARDED; v4: libnfs 4.0 EXCLUSIVE4)\n"
		"  create3 unchecked|guarded|exclusive PATH [VERIFIER-HEX16]   raw NFSv3 CREATE\n"
		"  handle PATH                      the file handle bytes as hex\n"
		"  getattr-fh HEX                   raw NFSv3 GETATTR on a handle\n"
		"  unlink-while-open PATH LEN SEED  open, unlink, read LEN through the open handle, close\n"
		"  mkfiles DIR COUNT                create DIR/f00000.. empty files\n"
		"  ls DIR                           one name=... line per entry, then count=\n"
		"  randio PATH SIZE BS QD COUNT read|write|readverify SEED [COMMIT_EVERY]\n"
		"                                   random aligned I/O at queue depth QD (async API)\n"
		"  commitlog PATH SIZE SEED COUNT EVERY   v3 UNSTABLE random writes, COMMIT every EVERY,\n"
		"                                   committed=N after each successful COMMIT\n"
		"  blocklog PATH SIZE SEED COUNT EVERY    the same with 4 KiB writes at aligned random blocks\n");
	return 2;
}

static uint8_t pattern_byte(uint64_t pos, uint64_t seed)
{
	uint64_t x = (pos + 1) * 0x9e3779b97f4a7c15ULL ^ (seed * 0xff51afd7ed558ccdULL);
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *s == '\0' || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* type= is file, dir, symlink, fifo, sock, chr or blk; rdev=MAJOR,MINOR for a device. */
static void print_stat(const struct nfs_stat_64 *st)
{
	uint64_t fmt = st->nfs_mode & S_IFMT;
	printf("fileid=%" PRIu64 " size=%" PRIu64 " mode=%" PRIo64 " nlink=%" PRIu64 " uid=%" PRIu64
	       " gid=%" PRIu64 " used=%" PRIu64 " mtime=%" PRIu64 ".%09" PRIu64 " type=%s",
	       st->nfs_ino, st->nfs_size, st->nfs_mode & 07777, st->nfs_nlink, st->nfs_uid, st->nfs_gid,
	       st->nfs_used, st->nfs_mtime, st->nfs_mtime_nsec,
	       fmt == S_IFDIR    ? "dir"
	       : fmt == S_IFLNK  ? "symlink"
	       : fmt == S_IFREG  ? "file"
	       : fmt == S_IFIFO  ? "fifo"
	       : fmt == S_IFSOCK ? "sock"
	       : fmt == S_IFCHR  ? "chr"
	       : fmt == S_IFBLK  ? "blk"
				 : "other");
	/* libnfs 4.0 builds nfs_rdev with makedev(specdata1, specdata2). */
	if (fmt == S_IFCHR || fmt == S_IFBLK)
		printf(" rdev=%u,%u", major((dev_t)st->nfs_rdev), minor((dev_t)st->nfs_rdev));
	printf("\n");
}

/* mknod PATH fifo|sock|chr|blk [MAJOR MINOR] [OCTAL_MODE]: libnfs's nfs_mknod (MKNOD3 over v3). */
static int do_mknod(char **a, int n)
{
	int type, dev_args;
	if (n < 2)
		return usage();
	if (strcmp(a[1], "fifo") == 0)
		type = S_IFIFO, dev_args = 0;
	else if (strcmp(a[1], "sock") == 0)
		type = S_IFSOCK, dev_args = 0;
	else if (strcmp(a[1], "chr") == 0)
		type = S_IFCHR, dev_args = 2;
	else if (strcmp(a[1], "blk") == 0)
		type = S_IFBLK, dev_args = 2;
	else
		return usage();
	uint64_t maj = 0, min = 0;
	if (n != 2 + dev_args && n != 3 + dev_args)
		return usage();
	/* dev travels as an int: makedev's encoding stays positive for major < 4096, minor < 2^19 */
	if (dev_args && (parse_u64(a[2], &maj) || parse_u64(a[3], &min) || maj > 4095 || min >= 1 << 19))
		return usage();
	unsigned long perm = 0644;
	if (n == 3 + dev_args) {
		const char *m = a[2 + dev_args];
		if (m[0] == '\0' || m[strspn(m, "01234567")] != '\0' || (perm = strtoul(m, NULL, 8)) > 07777)
			return usage();
	}
	int ret = nfs_mknod(nfs, a[0], type | (int)perm, (int)makedev((unsigned)maj, (unsigned)min));
	return ret < 0 ? fail("mknod", ret) : (printf("ok=1\n"), 0);
}

#define CHUNK (1024 * 1024)

/*
 * Opens PATH read-write, creating it if missing. libnfs 4.0 quirks over NFSv4: a write-only
 * open gets NFS4ERR_OPENMODE on WRITE, and every create is EXCLUSIVE4 (so O_CREAT on an existing
 * name fails with EEXIST): open first, create only on ENOENT.
 */
static int open_rw(const char *path, int trunc, struct nfsfh **fh)
{
	int ret = nfs_open(nfs, path, O_RDWR | (trunc ? O_TRUNC : 0), fh);
	if (ret == -ENOENT)
		ret = nfs_open2(nfs, path, O_RDWR | O_CREAT | (trunc ? O_TRUNC : 0), 0644, fh);
	return ret;
}

/*
 * Largest WRITE we send: libnfs 4.0 cannot encode NFSv4 WRITEs much over 4 KB ("Failed to
 * encode COMPOUND4args"; the same bug makes its nfs-cp fail from 4000 bytes).
 */
static uint64_t write_max(void)
{
	return nfs_version == 4 ? 2048 : CHUNK;
}

static int do_write(const char *path, uint64_t off, uint64_t len, uint64_t seed)
{
	struct nfsfh *fh;
	int ret = open_rw(path, 0, &fh);
	if (ret < 0)
		return fail("open", ret);
	char *buf = malloc(CHUNK);
	if (!buf)
		return fail("malloc", -ENOMEM);
	uint64_t done = 0;
	while (done < len) {
		uint64_t n = len - done < CHUNK ? len - done : CHUNK;
		for (uint64_t i = 0; i < n; i++)
			buf[i] = (char)pattern_byte(off + done + i, seed);
		uint64_t part = 0;
		while (part < n) {
			uint64_t piece = n - part < write_max() ? n - part : write_max();
			ret = nfs_pwrite(nfs, fh, off + done + part, piece, buf + part);
			if (ret <= 0) {
				free(buf);
				return fail("pwrite", ret == 0 ? -EIO : ret);
			}
			part += (uint64_t)ret;
		}
		done += n;
	}
	free(buf);
	if ((ret = nfs_fsync(nfs, fh)) < 0)
		return fail("fsync", ret);
	if ((ret = nfs_close(nfs, fh)) < 0)
		return fail("close", ret);
	printf("written=%" PRIu64 "\n", len);
	return 0;
}

/* Reads [off, off+len) through an open handle and compares with the pattern. */
/* The seed `verify` takes as the word "zero": every byte 0 (a hole). */
#define ZERO_SEED UINT64_MAX

static int verify_fh(struct nfsfh *fh, uint64_t off, uint64_t len, uint64_t seed)
{
	char *buf = malloc(CHUNK);
	if (!buf)
		return fail("malloc", -ENOMEM);
	uint64_t done = 0;
	while (done < len) {
		uint64_t n = len - done < CHUNK ? len - done : CHUNK;
		int ret = nfs_pread(nfs, fh, off + done, n, buf);
		if (ret < 0) {
			free(buf);
			return fail("pread", ret);
		}
		if (ret == 0) {
			free(buf);
			printf("error=\"short read\" errno=0 at=%" PRIu64 "\n", off + done);
			return 1;
		}
		for (int i = 0; i < ret; i++) {
			uint8_t want = seed == ZERO_SEED ? 0 : pattern_byte(off + done + i, seed);
			if ((uint8_t)buf[i] != want) {
				free(buf);
				printf("error=mismatch errno=0 at=%" PRIu64 "\n", off + done + i);
				return 1;
			}
		}
		done += (uint64_t)ret;
	}
	free(buf);
	printf("verified=%" PRIu64 "\n", len);
	return 0;
}

static int do_verify(const char *path, uint64_t off, uint64_t len, uint64_t seed)
{
	struct nfsfh *fh;
	int ret = nfs_open(nfs, path, O_RDONLY, &fh);
	if (ret < 0)
		return fail("open", ret);
	ret = verify_fh(fh, off, len, seed);
	nfs_close(nfs, fh);
	return ret;
}

static int do_put(const char *path, const char *text)
{
	struct nfsfh *fh;
	int ret = open_rw(path, 1, &fh);
	if (ret < 0)
		return fail("open", ret);
	size_t len = strlen(text);
	if (len && (ret = nfs_pwrite(nfs, fh, 0, len, text)) != (int)len)
		return fail("pwrite", ret < 0 ? ret : -EIO);
	if ((ret = nfs_close(nfs, fh)) < 0)
		return fail("close", ret);
	printf("written=%zu\n", len);
	return 0;
}

static int do_cat(const char *path)
{
	struct nfsfh *fh;
	char buf[65536];
	int ret = nfs_open(nfs, path, O_RDONLY, &fh);
	if (ret < 0)
		return fail("open", ret);
	uint64_t off = 0;
	for (;;) {
		ret = nfs_pread(nfs, fh, off, sizeof buf, buf);
		if (ret < 0)
			return fail("pread", ret);
		if (ret == 0)
			break;
		fwrite(buf, 1, (size_t)ret, stdout);
		off += (uint64_t)ret;
	}
	nfs_close(nfs, fh);
	return 0;
}

static void print_hex(const char *key, const char *val, int len)
{
	printf("%s=", key);
	for (int i = 0; i < len; i++)
		printf("%02x", (unsigned char)val[i]);
	printf(" len=%d\n", len);
}

static int do_handle(const char *path)
{
	struct nfsfh *fh;
	int ret = nfs_open(nfs, path, O_RDONLY, &fh);
	if (ret < 0)
		return fail("open", ret);
	struct nfs_fh *raw = nfs_get_fh(fh);
	print_hex("handle", raw->val, raw->len);
	nfs_close(nfs, fh);
	return 0;
}

/* ---- raw NFSv3 calls: a synchronous wrapper over the async API ---- */

struct raw_call {
	int done;
	int status;
	int nfsstat;
	fattr3 attr;
	int have_attr;
	char err[256];
};

static int raw_wait(struct raw_call *c)
{
	struct rpc_context *rpc = nfs_get_rpc_context(nfs);
	time_t deadline = time(NULL) + 60;
	while (!c->done) {
		struct pollfd p = {.fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc)};
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			return -errno;
		if (rpc_service(rpc, p.revents) < 0)
			return -EIO;
		if (time(NULL) > deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

static int nfsstat_errno(int st)
{
	switch (st) {
	case NFS3ERR_PERM: return EPERM;
	case NFS3ERR_NOENT: return ENOENT;
	case NFS3ERR_IO: return EIO;
	case NFS3ERR_ACCES: return EACCES;
	case NFS3ERR_EXIST: return EEXIST;
	case NFS3ERR_NOTDIR: return ENOTDIR;
	case NFS3ERR_ISDIR: return EISDIR;
	case NFS3ERR_INVAL: return EINVAL;
	case NFS3ERR_NOSPC: return ENOSPC;
	case NFS3ERR_NAMETOOLONG: return ENAMETOOLONG;
	case NFS3ERR_NOTEMPTY: return ENOTEMPTY;
	case NFS3ERR_STALE: return ESTALE;
	case NFS3ERR_BADHANDLE: return EBADF;
	case NFS3ERR_SERVERFAULT: return EREMOTEIO;
	case NFS3ERR_JUKEBOX: return EAGAIN;
	case NFS3ERR_ROFS: return EROFS;
	default: return EIO;
	}
}

static int raw_result(struct raw_call *c, const char *what)
{
	if (c->status != RPC_STATUS_SUCCESS) {
		printf("error=\"%s: rpc: %s\" errno=%d\n", what, c->err, EIO);
		return 1;
	}
	if (c->nfsstat != NFS3_OK) {
		printf("error=\"%s: nfsstat %d\" errno=%d nfsstat=%d\n", what, c->nfsstat,
		       nfsstat_errno(c->nfsstat), c->nfsstat);
		return 1;
	}
	return 0;
}

static void raw_status(struct raw_call *c, int status, void *data)
{
	c->done = 1;
	c->status = status;
	if (status != RPC_STATUS_SUCCESS)
		snprintf(c->err, sizeof c->err, "%s", data ? (const char *)data : "cancelled");
}

static void create_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct raw_call *c = priv;
	(void)rpc;
	raw_status(c, status, data);
	if (status == RPC_STATUS_SUCCESS) {
		CREATE3res *res = data;
		c->nfsstat = res->status;
		if (res->status == NFS3_OK && res->CREATE3res_u.resok.obj_attributes.attributes_follow) {
			c->attr = res->CREATE3res_u.resok.obj_attributes.post_op_attr_u.attributes;
			c->have_attr = 1;
		}
	}
}

static void getattr_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct raw_call *c = priv;
	(void)rpc;
	raw_status(c, status, data);
	if (status == RPC_STATUS_SUCCESS) {
		GETATTR3res *res = data;
		c->nfsstat = res->status;
		if (res->status == NFS3_OK) {
			c->attr = res->GETATTR3res_u.resok.obj_attributes;
			c->have_attr = 1;
		}
	}
}

static void print_fattr3(const fattr3 *a)
{
	printf("fileid=%" PRIu64 " size=%" PRIu64 " mode=%o nlink=%u uid=%u gid=%u mtime=%u.%09u\n",
	       (uint64_t)a->fileid, (uint64_t)a->size, (unsigned)a->mode & 07777, a->nlink, a->uid,
	       a->gid, a->mtime.seconds, a->mtime.nseconds);
}

static int do_create3(const char *mode, const char *path, const char *verf_hex)
{
	if (nfs_version != 3) {
		printf("error=\"create3 needs version=3\" errno=%d\n", EINVAL);
		return 1;
	}
	char *slash = strrchr(path, '/');
	if (!slash || slash[1] == '\0')
		return usage();
	char dir[4096];
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	if (dir[0] == '\0')
		strcpy(dir, "/");
	struct nfsfh *dfh;
	int ret = nfs_open(nfs, dir, O_RDONLY, &dfh);
	if (ret < 0)
		return fail("open parent", ret);
	struct nfs_fh *raw = nfs_get_fh(dfh);

	CREATE3args args;
	memset(&args, 0, sizeof args);
	args.where.dir.data.data_len = (u_int)raw->len;
	args.where.dir.data.data_val = raw->val;
	args.where.name = slash + 1;
	if (strcmp(mode, "unchecked") == 0 || strcmp(mode, "guarded") == 0) {
		args.how.mode = mode[0] == 'u' ? UNCHECKED : GUARDED;
		args.how.createhow3_u.obj_attributes.mode.set_it = 1;
		args.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = 0644;
	} else if (strcmp(mode, "exclusive") == 0) {
		args.how.mode = EXCLUSIVE;
		if (!verf_hex || strlen(verf_hex) != 16)
			return usage();
		for (int i = 0; i < 8; i++) {
			unsigned int b;
			if (sscanf(verf_hex + 2 * i, "%2x", &b) != 1)
				return usage();
			args.how.createhow3_u.verf[i] = (char)b;
		}
	} else {
		return usage();
	}
	struct raw_call c;
	memset(&c, 0, sizeof c);
	if (rpc_nfs3_create_async(nfs_get_rpc_context(nfs), create_cb, &args, &c) != 0)
		return fail("rpc_nfs3_create_async", -EIO);
	if ((ret = raw_wait(&c)) < 0)
		return fail("create3", ret);
	nfs_close(nfs, dfh);
	if (raw_result(&c, "create3"))
		return 1;
	if (c.have_attr)
		print_fattr3(&c.attr);
	else
		printf("created=1\n");
	return 0;
}

/* Raw NFSv3 GETATTR of a handle; the result is in *c. */
static int raw_getattr(char *bytes, u_int len, struct raw_call *c)
{
	GETATTR3args args;
	args.object.data.data_len = len;
	args.object.data.data_val = bytes;
	memset(c, 0, sizeof *c);
	if (rpc_nfs3_getattr_async(nfs_get_rpc_context(nfs), getattr_cb, &args, c) != 0)
		return -EIO;
	return raw_wait(c);
}

static int do_getattr_fh(const char *hex)
{
	size_t n = strlen(hex);
	if (n == 0 || n % 2 || n > 2 * 128)
		return usage();
	char bytes[128];
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return usage();
		bytes[i] = (char)b;
	}
	struct raw_call c;
	int ret = raw_getattr(bytes, (u_int)(n / 2), &c);
	if (ret < 0)
		return fail("getattr", ret);
	if (raw_result(&c, "getattr"))
		return 1;
	print_fattr3(&c.attr);
	return 0;
}

static int do_unlink_while_open(const char *path, uint64_t len, uint64_t seed)
{
	struct nfsfh *fh;
	int ret = nfs_open(nfs, path, O_RDONLY, &fh);
	if (ret < 0)
		return fail("open", ret);
	if ((ret = nfs_unlink(nfs, path)) < 0)
		return fail("unlink", ret);
	struct nfs_stat_64 st;
	ret = nfs_stat64(nfs, path, &st);
	printf("stat_after_unlink_errno=%d\n", ret < 0 ? -ret : 0);
	if (nfs_version == 3) {
		/* NFSv3 has no open state: what does the server say about the handle now? */
		struct nfs_fh *raw = nfs_get_fh(fh);
		struct raw_call c;
		if ((ret = raw_getattr(raw->val, (u_int)raw->len, &c)) < 0)
			return fail("getattr", ret);
		printf("getattr_after_unlink_nfsstat=%d\n", c.status == RPC_STATUS_SUCCESS ? c.nfsstat : -1);
	}
	ret = verify_fh(fh, 0, len, seed);
	int cret = nfs_close(nfs, fh);
	printf("close_errno=%d\n", cret < 0 ? -cret : 0);
	return ret;
}

static int do_mkfiles(const char *dir, uint64_t count)
{
	char path[4096];
	for (uint64_t i = 0; i < count; i++) {
		struct nfsfh *fh;
		snprintf(path, sizeof path, "%s/f%05" PRIu64, dir, i);
		int ret = nfs_creat(nfs, path, 0644, &fh);
		if (ret < 0)
			return fail(path, ret);
		nfs_close(nfs, fh);
	}
	printf("created=%" PRIu64 "\n", count);
	return 0;
}

static int do_ls(const char *dir)
{
	struct nfsdir *d;
	int ret = nfs_opendir(nfs, dir, &d);
	if (ret < 0)
		return fail("opendir", ret);
	struct nfsdirent *e;
	uint64_t count = 0;
	while ((e = nfs_readdir(nfs, d)) != NULL) {
		if (strcmp(e->name, ".") == 0 || strcmp(e->name, "..") == 0)
			continue;
		printf("name=%s fileid=%" PRIu64 "\n", e->name, (uint64_t)e->inode);
		count++;
	}
	nfs_closedir(nfs, d);
	printf("count=%" PRIu64 "\n", count);
	return 0;
}

/* ---- commitlog: a crash-test writer that says what is committed (raw NFSv3 WRITE/COMMIT) ---- */

struct cl_call {
	struct raw_call c;
	char verf[NFS3_WRITEVERFSIZE];
	uint64_t count; /* bytes the server says it wrote */
	int committed; /* how stable the server says it is (stable_how) */
};

static void cl_write_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct cl_call *c = priv;
	(void)rpc;
	raw_status(&c->c, status, data);
	if (status == RPC_STATUS_SUCCESS) {
		WRITE3res *res = data;
		c->c.nfsstat = res->status;
		if (res->status == NFS3_OK) {
			memcpy(c->verf, res->WRITE3res_u.resok.verf, sizeof c->verf);
			c->count = res->WRITE3res_u.resok.count;
			c->committed = (int)res->WRITE3res_u.resok.committed;
		}
	}
}

static void cl_commit_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct cl_call *c = priv;
	(void)rpc;
	raw_status(&c->c, status, data);
	if (status == RPC_STATUS_SUCCESS) {
		COMMIT3res *res = data;
		c->c.nfsstat = res->status;
		if (res->status == NFS3_OK)
			memcpy(c->verf, res->COMMIT3res_u.resok.verf, sizeof c->verf);
	}
}

/* The next xorshift64* number of the commitlog/blocklog sequence. */
static uint64_t cl_next(uint64_t *rng)
{
	*rng ^= *rng >> 12;
	*rng ^= *rng << 25;
	*rng ^= *rng >> 27;
	return *rng * 0x2545F4914F6CDD1DULL;
}

/*
 * write3 PATH OFFSET LEN SEED: one FILE_SYNC WRITE3 of LEN (at most 64 KiB) pattern bytes; the
 * server's status is printed as is ("nfsstat=N"), which libnfs's pwrite does not report, and
 * how stable it says the data is ("committed=N": 0 UNSTABLE, 1 DATA_SYNC, 2 FILE_SYNC).
 */
static int do_write3(const char *path, uint64_t off, uint64_t len, uint64_t seed)
{
	if (nfs_version != 3 || len == 0 || len > 65536) {
		printf("error=\"write3 needs version=3 and 1..65536 bytes\" errno=%d\n", EINVAL);
		return 1;
	}
	struct nfsfh *fh;
	int ret = nfs_open(nfs, path, O_RDONLY, &fh);
	if (ret < 0)
		return fail("open", ret);
	char *buf = malloc(len);
	if (!buf)
		return fail("malloc", -ENOMEM);
	for (uint64_t j = 0; j < len; j++)
		buf[j] = (char)pattern_byte(off + j, seed);
	struct nfs_fh *raw = nfs_get_fh(fh);
	WRITE3args w;
	memset(&w, 0, sizeof w);
	w.file.data.data_len = (u_int)raw->len;
	w.file.data.data_val = raw->val;
	w.offset = off;
	w.count = (count3)len;
	w.stable = FILE_SYNC;
	w.data.data_len = (u_int)len;
	w.data.data_val = buf;
	struct cl_call c;
	memset(&c, 0, sizeof c);
	if (rpc_nfs3_write_async(nfs_get_rpc_context(nfs), cl_write_cb, &w, &c) != 0)
		return fail("rpc_nfs3_write_async", -EIO);
	if ((ret = raw_wait(&c.c)) < 0)
		return fail("write3", ret);
	free(buf);
	if (raw_result(&c.c, "write3"))
		return 1;
	/* committed: 0 UNSTABLE, 1 DATA_SYNC, 2 FILE_SYNC (RFC 1813 stable_how). */
	printf("written=%" PRIu64 " committed=%d\n", (uint64_t)c.count, c.committed);
	return 0;
}

/*
 * commitlog PATH SIZE SEED COUNT EVERY: COUNT UNSTABLE WRITEs, one at a time, of 4 KiB..64 KiB at
 * random byte offsets below SIZE; write i carries pattern_byte(pos, SEED + i + 1) and its offset
 * and length come from xorshift64* seeded like randio (the tests replay both). A COMMIT follows
 * every EVERY writes (and the last one); once it succeeds with the writes' verifier, the line
 * "committed=N bytes=B" says writes 0..N-1 are stable. Stops at the first error.
 *
 * blocklog (BLOCKS = 1) is the same with every write exactly 4 KiB at a 4 KiB-aligned offset:
 * block (one xorshift64* number) % (SIZE / 4096); SIZE must be a multiple of 4 KiB.
 */
static int do_commitlog(char **a, int n, int blocks)
{
	uint64_t size, seed, count, every;
	if (n != 5 || parse_u64(a[1], &size) || parse_u64(a[2], &seed) || parse_u64(a[3], &count) ||
	    parse_u64(a[4], &every) || every == 0 || size < (blocks ? 4096 : 65536) ||
	    (blocks && size % 4096))
		return usage();
	if (nfs_version != 3) {
		printf("error=\"%s needs version=3\" errno=%d\n", blocks ? "blocklog" : "commitlog",
		       EINVAL);
		return 1;
	}
	struct nfsfh *fh;
	int ret = open_rw(a[0], 0, &fh);
	if (ret < 0)
		return fail("open", ret);
	struct nfs_fh *raw = nfs_get_fh(fh);
	struct rpc_context *rpc = nfs_get_rpc_context(nfs);
	char *buf = malloc(65536);
	if (!buf)
		return fail("malloc", -ENOMEM);
	uint64_t rng = seed * 0x9e3779b97f4a7c15ULL + 1, bytes = 0;
	char verf[NFS3_WRITEVERFSIZE];
	int have_verf = 0;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t len, off;
		if (blocks) {
			len = 4096;
			off = cl_next(&rng) % (size / 4096) * 4096;
		} else {
			len = 4096 + cl_next(&rng) % 61441;
			off = cl_next(&rng) % (size - len + 1);
		}
		for (uint64_t j = 0; j < len; j++)
			buf[j] = (char)pattern_byte(off + j, seed + i + 1);

		WRITE3args w;
		memset(&w, 0, sizeof w);
		w.file.data.data_len = (u_int)raw->len;
		w.file.data.data_val = raw->val;
		w.offset = off;
		w.count = (count3)len;
		w.stable = UNSTABLE;
		w.data.data_len = (u_int)len;
		w.data.data_val = buf;
		struct cl_call c;
		memset(&c, 0, sizeof c);
		if (rpc_nfs3_write_async(rpc, cl_write_cb, &w, &c) != 0)
			return fail("rpc_nfs3_write_async", -EIO);
		if ((ret = raw_wait(&c.c)) < 0) {
			printf("failed_write=%" PRIu64 "\n", i);
			return fail("write", ret);
		}
		/* A short write would break the replay: report it as an I/O error. */
		if (c.c.status == RPC_STATUS_SUCCESS && c.c.nfsstat == NFS3_OK && c.count != len) {
			printf("error=\"short write %" PRIu64 " of %" PRIu64 "\" errno=%d\n", c.count, len, EIO);
			return 1;
		}
		if (c.c.status != RPC_STATUS_SUCCESS || c.c.nfsstat != NFS3_OK)
			printf("failed_write=%" PRIu64 "\n", i);
		if (raw_result(&c.c, "write"))
			return 1;
		if (have_verf && memcmp(verf, c.verf, sizeof verf) != 0) {
			printf("error=\"write verifier changed at write %" PRIu64 "\" errno=%d\n", i, EIO);
			return 1;
		}
		memcpy(verf, c.verf, sizeof verf);
		have_verf = 1;
		bytes += len;

		if ((i + 1) % every == 0 || i + 1 == count) {
			COMMIT3args cm;
			memset(&cm, 0, sizeof cm);
			cm.file.data.data_len = (u_int)raw->len;
			cm.file.data.data_val = raw->val;
			memset(&c, 0, sizeof c);
			if (rpc_nfs3_commit_async(rpc, cl_commit_cb, &cm, &c) != 0)
				return fail("rpc_nfs3_commit_async", -EIO);
			if ((ret = raw_wait(&c.c)) < 0) {
				printf("failed_commit=%" PRIu64 "\n", i + 1);
				return fail("commit", ret);
			}
			if (c.c.status != RPC_STATUS_SUCCESS || c.c.nfsstat != NFS3_OK)
				printf("failed_commit=%" PRIu64 "\n", i + 1);
			if (raw_result(&c.c, "commit"))
				return 1;
			/* A new verifier means the server restarted: the writes may be lost, no record. */
			if (memcmp(verf, c.verf, sizeof verf) != 0) {
				printf("error=\"commit verifier differs from the writes'\" errno=%d\n", EIO);
				return 1;
			}
			printf("committed=%" PRIu64 " bytes=%" PRIu64 "\n", i + 1, bytes);
		}
	}
	nfs_close(nfs, fh);
	free(buf);
	printf("done=1 writes=%" PRIu64 " bytes=%" PRIu64 "\n", count, bytes);
	return 0;
}

/* ---- random I/O at a queue depth, over libnfs' async API (for benchmarks) ---- */

struct rio;
struct rio_slot {
	struct rio *r;
	uint64_t off;
	char *buf;
};
struct rio {
	struct nfsfh *fh;
	uint64_t size, bs, count, seed, rng, commit_every;
	uint64_t issued, completed, since_commit, commits;
	uint64_t errors, mismatches;
	int mode; /* 0 read, 1 write, 2 read + verify the pattern */
	int inflight;
	int first_err;
};

static uint64_t rio_next(struct rio *r)
{
	/* xorshift64* */
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return r->rng * 0x2545F4914F6CDD1DULL;
}

static void rio_issue(struct rio_slot *s);

static void rio_fsync_cb(int err, struct nfs_context *n, void *data, void *priv)
{
	struct rio *r = priv;
	(void)n;
	(void)data;
	r->inflight--;
	r->commits++;
	if (err < 0) {
		r->errors++;
		if (!r->first_err)
			r->first_err = -err;
	}
}

static void rio_cb(int err, struct nfs_context *n, void *data, void *priv)
{
	struct rio_slot *s = priv;
	struct rio *r = s->r;
	r->inflight--;
	r->completed++;
	if (err < 0) {
		r->errors++;
		if (!r->first_err)
			r->first_err = -err;
	} else if (r->mode == 2) {
		const uint8_t *d = data;
		for (int i = 0; i < err; i++) {
			if (d[i] != pattern_byte(s->off + (uint64_t)i, r->seed)) {
				r->mismatches++;
				break;
			}
		}
	}
	if (r->mode == 1 && r->commit_every && ++r->since_commit >= r->commit_every) {
		r->since_commit = 0;
		if (nfs_fsync_async(n, r->fh, rio_fsync_cb, r) == 0)
			r->inflight++;
		else
			r->errors++;
	}
	if (r->issued < r->count)
		rio_issue(s);
}

static void rio_issue(struct rio_slot *s)
{
	struct rio *r = s->r;
	uint64_t blocks = r->size / r->bs;
	s->off = (rio_next(r) % blocks) * r->bs;
	r->issued++;
	int ret;
	if (r->mode == 1) {
		for (uint64_t i = 0; i < r->bs; i++)
			s->buf[i] = (char)pattern_byte(s->off + i, r->seed);
		ret = nfs_pwrite_async(nfs, r->fh, s->off, r->bs, s->buf, rio_cb, s);
	} else {
		ret = nfs_pread_async(nfs, r->fh, s->off, r->bs, rio_cb, s);
	}
	if (ret == 0) {
		r->inflight++;
	} else {
		r->errors++;
		r->completed++;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* randio PATH SIZE BS QD COUNT read|write|readverify SEED [COMMIT_EVERY] */
static int do_randio(char **a, int n)
{
	struct rio r;
	memset(&r, 0, sizeof r);
	uint64_t qd;
	if (n < 7 || n > 8 || parse_u64(a[1], &r.size) || parse_u64(a[2], &r.bs) ||
	    parse_u64(a[3], &qd) || parse_u64(a[4], &r.count) || parse_u64(a[6], &r.seed) ||
	    (n == 8 && parse_u64(a[7], &r.commit_every)) || r.bs == 0 || r.size < r.bs || qd == 0 ||
	    qd > 1024)
		return usage();
	if (strcmp(a[5], "read") == 0)
		r.mode = 0;
	else if (strcmp(a[5], "write") == 0)
		r.mode = 1;
	else if (strcmp(a[5], "readverify") == 0)
		r.mode = 2;
	else
		return usage();
	r.rng = r.seed * 0x9e3779b97f4a7c15ULL + 1;
	if (r.mode == 1 && r.bs > write_max()) {
		printf("error=\"randio: block size over %" PRIu64 " (libnfs limit for this version)\" errno=%d\n",
		       write_max(), EINVAL);
		return 1;
	}
	int ret = r.mode == 1 ? open_rw(a[0], 0, &r.fh) : nfs_open(nfs, a[0], O_RDONLY, &r.fh);
	if (ret < 0)
		return fail("open", ret);
	struct rio_slot *slots = calloc(qd, sizeof *slots);
	if (!slots)
		return fail("calloc", -ENOMEM);
	for (uint64_t i = 0; i < qd; i++) {
		slots[i].r = &r;
		if (r.mode == 1 && !(slots[i].buf = malloc(r.bs)))
			return fail("malloc", -ENOMEM);
	}
	double t0 = now_s();
	for (uint64_t i = 0; i < qd && r.issued < r.count; i++)
		rio_issue(&slots[i]);
	while (r.inflight > 0) {
		struct pollfd p = {.fd = nfs_get_fd(nfs), .events = (short)nfs_which_events(nfs)};
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			return fail("poll", -errno);
		if (nfs_service(nfs, p.revents) < 0)
			return fail("nfs_service", -EIO);
		if (now_s() - t0 > 600)
			return fail("randio", -ETIMEDOUT);
	}
	if (r.mode == 1 && (ret = nfs_fsync(nfs, r.fh)) < 0)
		return fail("final fsync", ret);
	double secs = now_s() - t0;
	nfs_close(nfs, r.fh);
	for (uint64_t i = 0; i < qd; i++)
		free(slots[i].buf);
	free(slots);
	printf("ops=%" PRIu64 " bytes=%" PRIu64 " seconds=%.6f iops=%.1f mib_per_s=%.2f commits=%" PRIu64
	       " errors=%" PRIu64 " mismatches=%" PRIu64 " first_errno=%d\n",
	       r.completed, r.completed * r.bs, secs, secs > 0 ? (double)r.completed / secs : 0.0,
	       secs > 0 ? (double)(r.completed * r.bs) / secs / 1048576.0 : 0.0, r.commits, r.errors,
	       r.mismatches, r.first_err);
	return r.errors || r.mismatches ? 1 : 0;
}

int strata_nfs_client_main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	nfs = nfs_init_context();
	if (!nfs) {
		printf("error=\"nfs_init_context failed\" errno=%d\n", ENOMEM);
		return 1;
	}
	struct nfs_url *url = nfs_parse_url_dir(nfs, argv[1]);
	if (!url)
		return fail("parse url", -EINVAL);
	if (strstr(argv[1], "version=4"))
		nfs_version = 4;
	nfs_set_timeout(nfs, 60000);
	int ret = nfs_mount(nfs, url->server, url->path);
	if (ret < 0)
		return fail("mount", ret);

	const char *cmd = argv[2];
	char **a = argv + 3;
	int n = argc - 3;
	uint64_t x, y, z;
	int rc;
	struct nfs_stat_64 st;
	char buf[4096];

	if ((strcmp(cmd, "stat") == 0 || strcmp(cmd, "lstat") == 0) && n == 1) {
		ret = cmd[0] == 's' ? nfs_stat64(nfs, a[0], &st) : nfs_lstat64(nfs, a[0], &st);
		rc = ret < 0 ? fail(cmd, ret) : (print_stat(&st), 0);
	} else if (strcmp(cmd, "write") == 0 && n == 4 && !parse_u64(a[1], &x) && !parse_u64(a[2], &y) &&
		   !parse_u64(a[3], &z)) {
		rc = do_write(a[0], x, y, z);
	} else if (strcmp(cmd, "write3") == 0 && n == 4 && !parse_u64(a[1], &x) &&
		   !parse_u64(a[2], &y) && !parse_u64(a[3], &z)) {
		rc = do_write3(a[0], x, y, z);
	} else if (strcmp(cmd, "verify") == 0 && n == 4 && !parse_u64(a[1], &x) &&
		   !parse_u64(a[2], &y) &&
		   (!parse_u64(a[3], &z) || (strcmp(a[3], "zero") == 0 && (z = ZERO_SEED)))) {
		rc = do_verify(a[0], x, y, z);
	} else if (strcmp(cmd, "put") == 0 && n == 2) {
		rc = do_put(a[0], a[1]);
	} else if (strcmp(cmd, "cat") == 0 && n == 1) {
		rc = do_cat(a[0]);
	} else if (strcmp(cmd, "mkdir") == 0 && n == 1) {
		rc = (ret = nfs_mkdir(nfs, a[0])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "chmod") == 0 && n == 2 && a[1][0] != '\0' &&
		   a[1][strspn(a[1], "01234567")] == '\0' && strtoul(a[1], NULL, 8) <= 07777) {
		ret = nfs_chmod(nfs, a[0], (int)strtoul(a[1], NULL, 8));
		rc = ret < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "mknod") == 0) {
		rc = do_mknod(a, n);
	} else if (strcmp(cmd, "rmdir") == 0 && n == 1) {
		rc = (ret = nfs_rmdir(nfs, a[0])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "unlink") == 0 && n == 1) {
		rc = (ret = nfs_unlink(nfs, a[0])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "rename") == 0 && n == 2) {
		rc = (ret = nfs_rename(nfs, a[0], a[1])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "link") == 0 && n == 2) {
		rc = (ret = nfs_link(nfs, a[0], a[1])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "symlink") == 0 && n == 2) {
		rc = (ret = nfs_symlink(nfs, a[0], a[1])) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "readlink") == 0 && n == 1) {
		ret = nfs_readlink(nfs, a[0], buf, sizeof buf);
		rc = ret < 0 ? fail(cmd, ret) : (printf("target=%s\n", buf), 0);
	} else if (strcmp(cmd, "truncate") == 0 && n == 2 && !parse_u64(a[1], &x)) {
		rc = (ret = nfs_truncate(nfs, a[0], x)) < 0 ? fail(cmd, ret) : (printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "create-excl") == 0 && n == 1) {
		struct nfsfh *fh;
		ret = nfs_create(nfs, a[0], O_WRONLY | O_EXCL, 0644, &fh);
		rc = ret < 0 ? fail(cmd, ret) : (nfs_close(nfs, fh), printf("ok=1\n"), 0);
	} else if (strcmp(cmd, "create3") == 0 && (n == 2 || n == 3)) {
		rc = do_create3(a[0], a[1], n == 3 ? a[2] : NULL);
	} else if (strcmp(cmd, "handle") == 0 && n == 1) {
		rc = do_handle(a[0]);
	} else if (strcmp(cmd, "getattr-fh") == 0 && n == 1) {
		rc = do_getattr_fh(a[0]);
	} else if (strcmp(cmd, "unlink-while-open") == 0 && n == 3 && !parse_u64(a[1], &x) &&
		   !parse_u64(a[2], &y)) {
		rc = do_unlink_while_open(a[0], x, y);
	} else if (strcmp(cmd, "mkfiles") == 0 && n == 2 && !parse_u64(a[1], &x)) {
		rc = do_mkfiles(a[0], x);
	} else if (strcmp(cmd, "statfs") == 0 && n == 1) {
		struct nfs_statvfs_64 sv;
		ret = nfs_statvfs64(nfs, a[0], &sv);
		if (ret < 0) {
			rc = fail(cmd, ret);
		} else {
			/* FSSTAT (through statvfs) and FSINFO (the mount's transfer limits). */
			printf("total_bytes=%" PRIu64 " free_bytes=%" PRIu64 " avail_bytes=%" PRIu64
			       " files=%" PRIu64 " ffree=%" PRIu64 " namemax=%" PRIu64 " readmax=%" PRIu64
			       " writemax=%" PRIu64 "\n",
			       sv.f_blocks * sv.f_frsize, sv.f_bfree * sv.f_frsize, sv.f_bavail * sv.f_frsize,
			       sv.f_files, sv.f_ffree, sv.f_namemax, nfs_get_readmax(nfs),
			       nfs_get_writemax(nfs));
			rc = 0;
		}
	} else if (strcmp(cmd, "randio") == 0) {
		rc = do_randio(a, n);
	} else if (strcmp(cmd, "commitlog") == 0) {
		rc = do_commitlog(a, n, 0);
	} else if (strcmp(cmd, "blocklog") == 0) {
		rc = do_commitlog(a, n, 1);
	} else if (strcmp(cmd, "ls") == 0 && n == 1) {
		rc = do_ls(a[0]);
	} else {
		rc = usage();
	}
	nfs_destroy_url(url);
	nfs_destroy_context(nfs);
	return rc;
}

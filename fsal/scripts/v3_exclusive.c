/* Hand check of NFSv3 CREATE EXCLUSIVE (ESXi .lck files) against the Strata FSAL, libnfs 4.0 raw API.
 * Build: gcc -o v3_exclusive v3_exclusive.c -lnfs; run inside try-ganesha.sh (export /strata, 20490/20048). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>
struct my_nfs_fh { int len; char *val; };  /* first member of libnfs 4.0's struct nfsfh */
static int done, status;
static void cb(struct rpc_context *rpc, int st, void *data, void *priv) {
    CREATE3res *r = data; done = 1;
    status = (st == RPC_STATUS_SUCCESS) ? (int)r->status : -1000 - st;
}
static int create_excl(struct nfs_context *nfs, struct my_nfs_fh *dir, const char *name, const char *verf) {
    CREATE3args a; memset(&a, 0, sizeof a);
    a.where.dir.data.data_len = dir->len; a.where.dir.data.data_val = dir->val;
    a.where.name = (char *)name;
    a.how.mode = EXCLUSIVE;
    memcpy(a.how.createhow3_u.verf, verf, 8);
    struct rpc_context *rpc = nfs_get_rpc_context(nfs);
    done = 0;
    if (rpc_nfs3_create_async(rpc, cb, &a, NULL)) return -2000;
    while (!done) {
        struct pollfd p = { .fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc) };
        if (poll(&p, 1, 5000) <= 0) return -3000;
        if (rpc_service(rpc, p.revents) < 0) return -4000;
    }
    return status;
}
int main(void) {
    struct nfs_context *nfs = nfs_init_context();
    struct nfs_url *u = nfs_parse_url_dir(nfs, "nfs://127.0.0.1/strata?version=3&nfsport=20490&mountport=20048");
    if (!u || nfs_mount(nfs, u->server, u->path) < 0) { printf("mount: %s\n", nfs_get_error(nfs)); return 2; }
    nfs_mkdir(nfs, "/ex");
    struct nfsfh *d;
    if (nfs_open(nfs, "/ex", O_RDONLY, &d) < 0) { printf("open dir: %s\n", nfs_get_error(nfs)); return 2; }
    struct my_nfs_fh *dfh = (struct my_nfs_fh *)d;
    printf("dir fh len %d\n", dfh->len);
    int fails = 0;
    int r = create_excl(nfs, dfh, ".lck-0001", "AAAABBBB"); printf("create: %d\n", r); fails += r != 0;
    r = create_excl(nfs, dfh, ".lck-0001", "AAAABBBB"); printf("replay same verifier: %d\n", r); fails += r != 0;
    r = create_excl(nfs, dfh, ".lck-0001", "CCCCDDDD"); printf("other verifier: %d (EXIST=17)\n", r); fails += r != 17;
    struct nfs_stat_64 st;
    if (nfs_stat64(nfs, "/ex/.lck-0001", &st) == 0) {
        unsigned lo; memcpy(&lo, "BBBB", 4);
        printf("mtime %llu (verifier low half %u)\n", (unsigned long long)st.nfs_mtime, lo);
        fails += st.nfs_mtime != lo;
    } else fails++;
    struct nfsfh *f;
    if (nfs_open(nfs, "/ex/.lck-0001", O_RDWR, &f) == 0) {
        char b[84]; memset(b, 'h', 84);
        nfs_pwrite(nfs, f, 0, 84, b); nfs_close(nfs, f);
        nfs_stat64(nfs, "/ex/.lck-0001", &st);
        printf("after 84-byte write: size %llu mtime %llu\n", (unsigned long long)st.nfs_size, (unsigned long long)st.nfs_mtime);
        fails += st.nfs_size != 84;
    }
    printf("fh length of dir (ESXi needs <= 56): %d\n", dfh->len); fails += dfh->len > 56;
    printf("%d failures\n", fails);
    return fails != 0;
}

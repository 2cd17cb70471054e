/* Hand smoke test of the Strata FSAL with libnfs 4.0 (v3 or v4): exclusive create, truncate,
 * rename over, links, symlinks, chmod, rmdir, unlink-while-open, large directory listing.
 * Build: gcc -o libnfs_smoke libnfs_smoke.c -lnfs; run: ./libnfs_smoke 3 3000; ./libnfs_smoke 4 500
 * inside try-ganesha.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/stat.h>
#include <nfsc/libnfs.h>
#define CHK(x) do { int _r = (x); if (_r < 0) { printf("FAIL %s:%d %s -> %d %s\n", __FILE__, __LINE__, #x, _r, nfs_get_error(nfs)); fails++; } } while (0)
int fails = 0;
int main(int argc, char **argv) {
    int ver = atoi(argv[1]);
    int nfiles = argc > 2 ? atoi(argv[2]) : 0;
    struct nfs_context *nfs = nfs_init_context();
    char url[256]; snprintf(url, sizeof url, "nfs://127.0.0.1/strata?version=%d&nfsport=20490&mountport=20048", ver);
    struct nfs_url *u = nfs_parse_url_dir(nfs, url);
    if (!u) { printf("url: %s\n", nfs_get_error(nfs)); return 2; }
    if (nfs_mount(nfs, u->server, u->path) < 0) { printf("mount: %s\n", nfs_get_error(nfs)); return 2; }
    char d[64]; snprintf(d, sizeof d, "/v%d", ver);
    nfs_mkdir(nfs, d);
    char p[256], q[256];
    struct nfsfh *fh, *fh2;
    /* exclusive / guarded create twice */
    snprintf(p, sizeof p, "%s/excl", d);
    CHK(nfs_open2(nfs, p, O_CREAT | O_EXCL | O_RDWR, 0644, &fh));
    if (fh) nfs_close(nfs, fh);
    int r = nfs_open2(nfs, p, O_CREAT | O_EXCL | O_RDWR, 0644, &fh2);
    printf("second O_EXCL create: %d (%s)\n", r, r < 0 ? nfs_get_error(nfs) : "ok");
    if (r >= 0) { printf("FAIL: second exclusive create succeeded\n"); fails++; nfs_close(nfs, fh2); }
    /* write, read, truncate */
    snprintf(p, sizeof p, "%s/data", d);
    CHK(nfs_open2(nfs, p, O_CREAT | O_RDWR | O_TRUNC, 0644, &fh));
    char buf[8192]; memset(buf, 'a', sizeof buf);
    CHK(nfs_pwrite(nfs, fh, 0, 3000, buf));
    CHK(nfs_fsync(nfs, fh));
    struct nfs_stat_64 st;
    CHK(nfs_fstat64(nfs, fh, &st)); if (st.nfs_size != 3000) { printf("FAIL size %llu\n", (unsigned long long)st.nfs_size); fails++; }
    unsigned long long ino = st.nfs_ino;
    CHK(nfs_ftruncate(nfs, fh, 100));
    CHK(nfs_fstat64(nfs, fh, &st)); if (st.nfs_size != 100) { printf("FAIL trunc size %llu\n", (unsigned long long)st.nfs_size); fails++; }
    char rb[200]; int n = nfs_pread(nfs, fh, 0, 200, rb); if (n != 100) { printf("FAIL read after trunc %d\n", n); fails++; }
    nfs_close(nfs, fh);
    /* rename over existing */
    snprintf(q, sizeof q, "%s/target", d);
    CHK(nfs_open2(nfs, q, O_CREAT | O_RDWR | O_TRUNC, 0644, &fh)); nfs_close(nfs, fh);
    CHK(nfs_rename(nfs, p, q));
    CHK(nfs_stat64(nfs, q, &st)); if (st.nfs_ino != ino || st.nfs_size != 100) { printf("FAIL rename target ino %llu size %llu\n", (unsigned long long)st.nfs_ino, (unsigned long long)st.nfs_size); fails++; }
    if (nfs_stat64(nfs, p, &st) == 0) { printf("FAIL old name still there\n"); fails++; }
    /* hard link + symlink */
    snprintf(p, sizeof p, "%s/hard", d);
    CHK(nfs_link(nfs, q, p));
    CHK(nfs_stat64(nfs, p, &st)); if (st.nfs_nlink != 2 || st.nfs_ino != ino) { printf("FAIL link nlink %llu\n", (unsigned long long)st.nfs_nlink); fails++; }
    snprintf(p, sizeof p, "%s/sym", d);
    CHK(nfs_symlink(nfs, "target", p));
    char lb[256] = {0}; CHK(nfs_readlink(nfs, p, lb, sizeof lb)); if (strcmp(lb, "target")) { printf("FAIL readlink '%s'\n", lb); fails++; }
    /* chmod */
    CHK(nfs_chmod(nfs, q, 0600)); CHK(nfs_stat64(nfs, q, &st)); if ((st.nfs_mode & 07777) != 0600) { printf("FAIL chmod %o\n", (unsigned)st.nfs_mode); fails++; }
    /* mkdir/rmdir and rmdir non-empty */
    snprintf(p, sizeof p, "%s/sub", d); CHK(nfs_mkdir(nfs, p));
    snprintf(q, sizeof q, "%s/sub/f", d); CHK(nfs_open2(nfs, q, O_CREAT | O_RDWR, 0644, &fh)); nfs_close(nfs, fh);
    r = nfs_rmdir(nfs, p); if (r >= 0) { printf("FAIL rmdir non-empty ok\n"); fails++; } else printf("rmdir non-empty: %s\n", nfs_get_error(nfs));
    CHK(nfs_unlink(nfs, q)); CHK(nfs_rmdir(nfs, p));
    /* unlink while open */
    snprintf(p, sizeof p, "%s/uwo", d);
    CHK(nfs_open2(nfs, p, O_CREAT | O_RDWR, 0644, &fh));
    CHK(nfs_pwrite(nfs, fh, 0, 10, "0123456789"));
    CHK(nfs_unlink(nfs, p));
    n = nfs_pread(nfs, fh, 0, 10, rb);
    printf("read after unlink (v%d): %d %s\n", ver, n, n < 0 ? nfs_get_error(nfs) : "");
    nfs_close(nfs, fh);
    /* many entries */
    if (nfiles) {
        snprintf(p, sizeof p, "%s/many", d); nfs_mkdir(nfs, p);
        for (int i = 0; i < nfiles; i++) { snprintf(q, sizeof q, "%s/many/f%05d", d, i); if (nfs_open2(nfs, q, O_CREAT | O_WRONLY, 0644, &fh) == 0) nfs_close(nfs, fh); else { printf("FAIL create %s\n", q); fails++; break; } }
        struct nfsdir *dir; CHK(nfs_opendir(nfs, p, &dir));
        struct nfsdirent *e; int cnt = 0; char *seen = calloc(nfiles, 1);
        while ((e = nfs_readdir(nfs, dir))) { if (e->name[0] == 'f') { int k = atoi(e->name + 1); if (k >= 0 && k < nfiles) { if (seen[k]) { printf("FAIL dup %s\n", e->name); fails++; } seen[k] = 1; cnt++; } } }
        nfs_closedir(nfs, dir);
        printf("listed %d of %d\n", cnt, nfiles); if (cnt != nfiles) fails++;
    }
    printf("v%d: %d failures\n", ver, fails);
    nfs_destroy_context(nfs);
    return fails ? 1 : 0;
}

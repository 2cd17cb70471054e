/*
 * Strata's hand-written build configuration for compiling against the
 * headers of Debian bookworm's nfs-ganesha 4.3 (see ganesha-fsal.md §1).
 *
 * Only defines that change what the public headers declare matter here.
 * They were inferred from the installed Debian binaries:
 *   - 9P, NFSv3, NLM, RQUOTA and NFSACL strings are present      -> on
 *   - libdbus, gssapi_krb5, nfsidmap, wbclient, cap, blkid linked  -> on
 *   - the DEBUG_SAL-only string " =State List= " is absent         -> off
 *     (DEBUG_SAL changes the layout of state_t: keep it undefined)
 *   - no lttng, no RDMA                                            -> off
 * The ABI test in fsal/tests checks these facts against the binaries.
 */
#ifndef STRATA_GANESHA_CONFIG_H
#define STRATA_GANESHA_CONFIG_H

#define GSH_CHECK_VERSION(major, minor, micro, libmajor, libminor, libmicro) \
	((libmajor) > (major) ||                                           \
	 ((libmajor) == (major) && (libminor) > (minor)) ||                \
	 ((libmajor) == (major) && (libminor) == (minor) &&                \
	  (libmicro) >= (micro)))

#define GANESHA_VERSION_MAJOR 4
#define GANESHA_VERSION_MINOR 3
#define GANESHA_EXTRA_VERSION
#define GANESHA_VERSION "4.3"
#define GANESHA_BUILD_RELEASE 1
#define VERSION GANESHA_VERSION
#define VERSION_COMMENT "Strata FSAL build"
#define _GIT_HEAD_COMMIT ""
#define _GIT_DESCRIBE ""
#define BUILD_HOST "strata"
#define FSAL_MODULE_LOC "/usr/lib/x86_64-linux-gnu/ganesha"

/* Features compiled into Debian's binaries. */
#define _MSPAC_SUPPORT 1
#define USE_NFSIDMAP 1
#define USE_DBUS 1
#define USE_CAPS 1
#define USE_BLKID 1
#define _USE_9P 1
#define _USE_NFS3 1
#define _USE_NLM 1
#define _USE_RQUOTA 1
#define USE_NFSACL3 1
#define RPCBIND 1
#define HAVE_KRB5 1
#define _HAVE_GSSAPI 1

/* Platform. */
#define LINUX 1
#define HAVE_STRING_H 1
#define HAVE_STRNLEN 1
#define LITTLEEND 1
#define HAVE_DAEMON 1
#define GSH_CAN_HOST_LOCAL_FS 1
#define HAVE_URCU_REF_GET_UNLESS_ZERO 1

/* Deliberately NOT defined: DEBUG_SAL, USE_LTTNG, _USE_9P_RDMA,
 * _USE_NFS_RDMA, DEBUG_MDCACHE, ENABLE_LOCKTRACE, SANITIZE_ADDRESS. */

#define NFS_GANESHA 1

#define GANESHA_CONFIG_PATH "/etc/ganesha/ganesha.conf"
#define GANESHA_PIDFILE_PATH "/run/ganesha.pid"
#define NFS_V4_RECOV_ROOT "/var/lib/nfs/ganesha"
#define NFS_V4_RECOV_DIR "v4recov"
#define NFS_V4_OLD_DIR "v4old"
#define DEFAULT_NFS_CCACHE_DIR "/run"

#define _LGPL_SOURCE 1

#endif /* STRATA_GANESHA_CONFIG_H */

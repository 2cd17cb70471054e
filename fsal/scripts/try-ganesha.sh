#!/bin/bash
# Hand test of libfsalstrata.so (ganesha-fsal.md §5): runs rpcbind + ganesha.nfsd with a
# Strata export inside a private net+mount namespace, runs CLIENT_SCRIPT there, stops both.
#   fsal/scripts/try-ganesha.sh WORK_DIR CLIENT_SCRIPT [EXTRA_STRATA_LINES]
# WORK_DIR gets ganesha.conf, ganesha.log and data/. The NFS port is 20490, MNT 20048.
# H5's launcher (ganesha-conf) is the real way to start Ganesha; this is only for FSAL work.
set -euo pipefail
if [ "${1:-}" != "--inside" ]; then
    WORK=$(realpath -m "$1"); CLIENT=$(realpath "$2"); EXTRA=${3:-}
    PLUGIN_DIR=${STRATA_PLUGIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target/debug}
    mkdir -p "$WORK/data" "$WORK/recov"
    cat > "$WORK/ganesha.conf" <<CONF
NFS_CORE_PARAM { NFS_Port = 20490; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false;
    Protocols = 3, 4; Plugins_Dir = "$PLUGIN_DIR"; Mount_Path_Pseudo = true; }
NFSV4 { Graceless = true; RecoveryRoot = "$WORK/recov"; }
STRATA {
    Data_Dir = "$WORK/data";
$EXTRA
}
EXPORT { Export_Id = 77; Path = "/"; Pseudo = "/strata"; Access_Type = RW;
    Squash = No_Root_Squash; Protocols = 3, 4; Transports = TCP; SecType = sys;
    MaxRead = 1048576; MaxWrite = 1048576;
    FSAL { Name = STRATA; } }
CONF
    exec unshare --net --mount --fork --kill-child=TERM "$0" --inside "$WORK" "$CLIENT"
fi
WORK=$2; CLIENT=$3
ip link set lo up
mount -t tmpfs tmpfs /run
rpcbind -f -w & RPID=$!
for _ in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done
: > "$WORK/ganesha.log"
ganesha.nfsd -F -f "$WORK/ganesha.conf" -L "$WORK/ganesha.log" -p /run/ganesha.pid -N NIV_EVENT & GPID=$!
# Stop what we started, by PID, whatever way this script ends: SIGTERM, then SIGKILL after
# a bounded wait (a clean shutdown takes well under a second).
stop_all() {
    kill $GPID 2>/dev/null || true
    for _ in $(seq 200); do kill -0 $GPID 2>/dev/null || break; sleep 0.05; done
    if kill -0 $GPID 2>/dev/null; then
        echo "ganesha.nfsd did not stop within 10 s of SIGTERM; killing it"; kill -9 $GPID
    fi
    wait $GPID 2>/dev/null || true
    kill $RPID 2>/dev/null || true; wait $RPID 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 143' TERM INT
ready=0
for _ in $(seq 200); do
    if grep -q "NFS SERVER INITIALIZED" "$WORK/ganesha.log"; then ready=1; break; fi
    kill -0 $GPID 2>/dev/null || break
    sleep 0.05
done
rc=0
if [ $ready = 1 ]; then
    bash "$CLIENT" || rc=$?
else
    echo "ganesha did not become ready"; rc=99
fi
exit $rc

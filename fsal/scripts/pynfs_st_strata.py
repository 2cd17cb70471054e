# Strata checks of ESXi NFSv4.1 behaviour, written for pynfs 4.1 (never vendored here).
# Use: copy into <pynfs>/nfs4.1/server41tests/st_strata.py, add "st_strata.py" to __all__ in
# that directory's __init__.py, then: ./testserver.py HOST:PORT/strata --maketree strata
from xdrdef.nfs4_const import *
from .environment import check, fail, create_file, open_file, close_file, write_file, read_file, rename_obj
from xdrdef.nfs4_type import stateid4
import nfs_ops
import nfs4lib
op = nfs_ops.NFS4ops()

def _size(sess, fh):
    res = sess.compound([op.putfh(fh), op.getattr(1 << FATTR4_SIZE)])
    check(res)
    return res.resarray[-1].obj_attributes[FATTR4_SIZE]

def testDenyBothSetattrSize(t, env):
    """ESXi 4.1: OPEN BOTH/DENY_BOTH then SETATTR size with that stateid (#1144)

    FLAGS: strata all
    CODE: STRATA1
    """
    sess1 = env.c1.new_client_session(env.testname(t))
    res = create_file(sess1, env.testname(t), access=OPEN4_SHARE_ACCESS_BOTH, deny=OPEN4_SHARE_DENY_BOTH)
    check(res)
    fh = res.resarray[-1].object
    stateid = res.resarray[-2].stateid
    res = sess1.compound([op.putfh(fh), op.setattr(stateid, {FATTR4_SIZE: 1 << 30})])
    check(res, msg="SETATTR size with the DENY_BOTH open's stateid")
    if _size(sess1, fh) != 1 << 30:
        fail("size not 1 GiB")
    res = write_file(sess1, fh, b"hello", 4096, stateid)
    check(res, msg="WRITE with own stateid")
    # Another client cannot open it, nor write or truncate it with the anonymous stateid.
    sess2 = env.c1.new_client_session(b"%s_2" % env.testname(t))
    path = sess1.c.homedir + [env.testname(t)]
    res = open_file(sess2, b"owner2", path, access=OPEN4_SHARE_ACCESS_READ)
    check(res, NFS4ERR_SHARE_DENIED, msg="second OPEN READ")
    res = write_file(sess2, fh, b"x", 0, nfs4lib.state00)
    if res.status == NFS4_OK:
        fail("anonymous WRITE succeeded under DENY_BOTH")
    res = sess2.compound([op.putfh(fh), op.setattr(nfs4lib.state00, {FATTR4_SIZE: 0})])
    if res.status == NFS4_OK:
        fail("anonymous SETATTR size succeeded under DENY_BOTH")
    res = close_file(sess1, fh, stateid=stateid)
    check(res)
    # After CLOSE the second client can open.
    res = open_file(sess2, b"owner2", path, access=OPEN4_SHARE_ACCESS_READ)
    check(res, msg="OPEN after CLOSE")

def testRenameOverOpenThenClose(t, env):
    """ESXi 4.1: RENAME x~ over open x, then READ and CLOSE with the old stateid/FH

    FLAGS: strata all
    CODE: STRATA2
    """
    sess1 = env.c1.new_client_session(env.testname(t))
    name = env.testname(t)
    res = create_file(sess1, name)
    check(res)
    fh = res.resarray[-1].object
    stateid = res.resarray[-2].stateid
    check(write_file(sess1, fh, b"old content", 0, stateid))
    tmp = name + b"~"
    res = create_file(sess1, tmp)
    check(res)
    fh2 = res.resarray[-1].object
    sid2 = res.resarray[-2].stateid
    check(write_file(sess1, fh2, b"new content", 0, sid2))
    check(close_file(sess1, fh2, stateid=sid2))
    home = sess1.c.homedir
    check(rename_obj(sess1, home + [tmp], home + [name]), msg="RENAME over open file")
    res = read_file(sess1, fh, 0, 100, stateid)
    check(res, msg="READ of renamed-over open file")
    if res.data != b"old content":
        fail("old data %r" % res.data)
    check(close_file(sess1, fh, stateid=stateid), msg="CLOSE with old FH")
    res = sess1.compound([op.putfh(fh), op.getattr(1 << FATTR4_SIZE)])
    check(res, NFS4ERR_STALE, msg="old FH after last CLOSE")

def testUnlinkWhileOpen(t, env):
    """REMOVE an open file; READ with its stateid until CLOSE

    FLAGS: strata all
    CODE: STRATA3
    """
    sess1 = env.c1.new_client_session(env.testname(t))
    name = env.testname(t)
    res = create_file(sess1, name)
    check(res)
    fh = res.resarray[-1].object
    stateid = res.resarray[-2].stateid
    check(write_file(sess1, fh, b"still here", 0, stateid))
    from .environment import lookup_obj
    d = lookup_obj(sess1, sess1.c.homedir)
    check(sess1.compound([op.putfh(d), op.remove(name)]), msg="REMOVE open file")
    res = read_file(sess1, fh, 0, 100, stateid)
    check(res, msg="READ after REMOVE")
    if res.data != b"still here":
        fail("data %r" % res.data)
    check(close_file(sess1, fh, stateid=stateid))

def testExclusive41Replay(t, env):
    """EXCLUSIVE4_1 create, replay with same verifier OK, other verifier EXIST

    FLAGS: strata all
    CODE: STRATA4
    """
    sess1 = env.c1.new_client_session(env.testname(t))
    name = env.testname(t)
    res = create_file(sess1, name, mode=EXCLUSIVE4_1, verifier=b"12345678")
    check(res, msg="EXCLUSIVE4_1 create")
    res = create_file(sess1, name, mode=EXCLUSIVE4_1, verifier=b"12345678")
    check(res, msg="EXCLUSIVE4_1 replay")
    res = create_file(sess1, name, mode=EXCLUSIVE4_1, verifier=b"87654321")
    check(res, NFS4ERR_EXIST, msg="EXCLUSIVE4_1 other verifier")

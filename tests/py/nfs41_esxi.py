"""ESXi-like NFSv4.1 steps with nfs-rs (the PyPI userspace client), for tests/tests/nfs41_esxi.rs.

Run inside the gateway's namespace by the venv's python that scripts/setup makes:
    nfs41_esxi.py session-rename URL     sessions; RENAME over an open file, CLOSE with its old handle
    nfs41_esxi.py denied URL NAME        NAME is held open DENY_BOTH by another client: every
                                         open and a truncate are refused with NFS4ERR_SHARE_DENIED
URL is nfs://127.0.0.1/<export>?version=4.1. Prints one `step=... ` line per step; any failed
check raises (a traceback, exit 1).
"""

import sys

import nfs_rs
from nfs_rs import Client, Version

GIB = 1 << 30


def connect(url):
    c = Client.connect(url, versions=["4.1"], connect_timeout=30, operation_timeout=60)
    # EXCHANGE_ID, CREATE_SESSION and RECLAIM_COMPLETE are done by connect; a 4.1 session.
    assert c.version is Version.NFS_V4_1, c.version
    assert c.health.lease_healthy is True, c.health
    return c


def session_rename(url):
    c = connect(url)
    print(f"step=session version={c.version.value}", flush=True)
    old, new = b"config.version = \"8\"\n# old\n", b"config.version = \"8\"\n# new, longer\n"
    with c.open("vm1.vmx", "wb") as w:
        w.write(old)
    with c.open("vm1.vmx~", "wb") as w:
        w.write(new)
    new_fileid = c.stat("vm1.vmx~").fileid
    held = c.open("vm1.vmx", "rb")  # OPEN of the target, kept while it is replaced
    c.rename("vm1.vmx~", "vm1.vmx")
    # The open's handle is the replaced file's: still readable, then CLOSE with it.
    assert held.read_at(0, len(old) + 10) == old
    held.close()
    print("step=rename_over_open read_old=OK close=OK", flush=True)
    # Another client (its own EXCHANGE_ID owner) sees only the new file under the name.
    c2 = connect(url)
    with c2.open("vm1.vmx", "rb") as r:
        assert r.read() == new
    assert c2.stat("vm1.vmx").fileid == new_fileid
    assert not c2.exists("vm1.vmx~")
    print(f"step=second_client fileid={new_fileid}", flush=True)
    # A thin disk: create, then nfs-rs's truncate (SETATTR size, anonymous stateid) to 1 GiB.
    with c.open("vm1-flat.vmdk", "wb"):
        pass
    c.truncate("vm1-flat.vmdk", GIB)
    st = c2.stat("vm1-flat.vmdk")
    assert st.size == GIB and st.used < (1 << 20), st
    print(f"step=thin size={st.size} used={st.used}", flush=True)
    c2.close()
    c.close()


def denied(url, name):
    c = connect(url)
    for what, call in [
        ("open_rb", lambda: c.open(name, "rb")),
        ("open_rwb", lambda: c.open(name, "r+b")),
        ("truncate", lambda: c.truncate(name, 4096)),
    ]:
        try:
            call()
        except nfs_rs.NfsError as e:
            assert e.code_name == "NFS4ERR_SHARE_DENIED", (what, e)
            print(f"step={what} status={e.code_name}", flush=True)
        else:
            raise AssertionError(f"{what} of {name} succeeded under another client's DENY_BOTH")
    print(f"step=size size={c.stat(name).size}", flush=True)
    c.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "session-rename":
        session_rename(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "denied":
        denied(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)

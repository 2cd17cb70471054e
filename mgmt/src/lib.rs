//! The management protocol between a Strata gateway and the `strata` CLI (DESIGN §7): request
//! and reply types, error kinds, and the client. The server lives in the engine
//! (`strata_engine::mgmt`); this crate has no engine in it, so the CLI does not link one.
//!
//!
//! Protocol: newline-delimited JSON, one request line answered by one response line, any number
//! of requests per connection. Every message carries `"version"` ([`PROTOCOL_VERSION`]).
//!
//! ```text
//! -> {"version":1,"op":"status"}
//! <- {"version":1,"result":{"status":{"gateway_version":"0.1.0",...}}}
//! -> {"version":1,"op":"sync","wait":true}
//! <- {"version":1,"result":{"sync":{"waited":true,"elapsed_ms":12}}}
//! -> {"version":1,"op":"volume_info","path":"/vm1/disk-flat.vmdk"}
//! <- {"version":1,"result":{"volume_info":{"path":"/vm1/disk-flat.vmdk","size":...}}}
//! -> {"version":1,"op":"volume_list","all":true}
//! <- {"version":1,"result":{"volume_list":{"volumes":[{"path":"/vm1/disk-flat.vmdk","ino":5,"size":...,"template":null,"parent":"/gold-flat.vmdk","ancestors":[3]}],"hidden":[]}}}
//! -> {"version":1,"op":"volume_clone","source":"/gold-flat.vmdk","path":"/vm9/disk-flat.vmdk","snapshot":null}
//! <- {"version":1,"result":{"volume_clone":{"path":"/vm9/disk-flat.vmdk","ino":9,"size":...,"source":"/gold-flat.vmdk","snapshot":"template"}}}
//! -> {"version":1,"op":"volume_template","path":"/gold-flat.vmdk"}
//! -> {"version":1,"op":"volume_flatten","path":"/vm9/disk-flat.vmdk","wait":false}
//! <- {"version":1,"result":{"job":{"id":4,"kind":"flatten","state":"running",...}}}
//! -> {"version":1,"op":"volume_create","path":"/vm2/disk-flat.vmdk","size":10737418240}
//! -> {"version":1,"op":"snapshot_create","path":"/vm1/disk-flat.vmdk","name":"s1","meta":[["k","v"]]}
//! <- {"version":1,"result":{"snapshot":{"path":"/vm1/disk-flat.vmdk","name":"s1","id":1,...}}}
//! -> {"version":1,"op":"snapshot_list","path":"/vm1/disk-flat.vmdk"}
//! <- {"version":1,"result":{"snapshot_list":{"path":"/vm1/disk-flat.vmdk","snapshots":[...]}}}
//! -> {"version":1,"op":"snapshot_info","path":"/vm1/disk-flat.vmdk","name":"s1"}
//! -> {"version":1,"op":"snapshot_rollback","path":"/vm1/disk-flat.vmdk","name":"s1","force":false}
//! -> {"version":1,"op":"job_list"}
//! <- {"version":1,"result":{"job_list":{"jobs":[{"id":1,"kind":"sync","state":"done",...}]}}}
//! -> {"version":1,"op":"job_show","id":1}
//! -> {"version":1,"op":"job_cancel","id":1}
//! -> {"version":1,"op":"snapshot_delete","path":"/vm1/disk-flat.vmdk","name":"s1"}
//! <- {"version":1,"result":{"snapshot_delete":{"path":"/vm1/disk-flat.vmdk","name":"s1"}}}
//! <- {"version":1,"error":{"kind":"not_found","message":"..."}}
//! ```
//!
//! Requests are at most [`MAX_REQUEST`] bytes; a longer one is answered `too_large` and the
//! connection closed (the stream cannot be resynchronised). A malformed request is answered
//! `bad_request` and changes nothing. Facade calls run on the server's own plain threads, never

mod client;
mod error;
mod offload;
mod protocol;
mod reports;

pub use self::client::{parse_response, ClientError, MgmtClient};
pub use self::error::{ErrorBody, ErrorKind};
pub use self::offload::{OffloadCloneReport, OffloadStatsReport};
pub use self::protocol::{
    Reply, Request, RequestLine, ResponseLine, MAX_REQUEST, MAX_RESPONSE, PROTOCOL_VERSION,
};
pub use self::reports::{
    ClusterCacheReport, FsckFinding, FsckReport, HiddenVolumeItem, JobListReport, JobReport,
    MapCacheReport, RecoveryPointReport, ScrubInfoReport, SnapshotDeleteReport, SnapshotListReport,
    SnapshotReport, SpaceReport, StatusReport, SyncReport, VolumeCloneReport, VolumeCreateReport,
    VolumeListItem, VolumeListReport, VolumeReport,
};

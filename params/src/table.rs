//! The table: every parameter of the `STRATA { }` block with its type, default and bounds.

use crate::value::{check_value, format_size, Value};
use crate::{GIB, KIB, MIB, TIB};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// An absolute path.
    Path,
    /// Free text.
    Text,
    /// One of these words (case-insensitive).
    Enum(&'static [&'static str]),
    /// A byte size with optional K/M/G/T suffix (1024-based), within bounds (bytes).
    Size {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A whole number within bounds.
    Count {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A duration in seconds (optional `s` suffix), within bounds.
    Seconds {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A comma-separated list of words (one quoted string in ganesha.conf).
    List,
}

/// One parameter of the `STRATA { }` block.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name as written in ganesha.conf.
    pub name: &'static str,
    /// Value type.
    pub ty: ParamType,
    /// Default value as text ("" = none / derived).
    pub default: &'static str,
    /// One-line documentation.
    pub doc: &'static str,
}

/// The largest Unix socket path (sun_path holds 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The default volume suffixes (ESXi, then KVM).
pub const DEFAULT_VOLUME_SUFFIXES: &str =
    "-flat.vmdk, -delta.vmdk, -sesparse.vmdk, .vswp, .raw, .img, .qcow2";

/// Every parameter of the `STRATA { }` block (DESIGN §7).
pub static PARAMS: &[Param] = &[
    Param {
        name: "Data_Dir",
        ty: ParamType::Path,
        default: "",
        doc: "Local state directory (redb namespace, caches); required",
    },
    Param {
        name: "Backend",
        ty: ParamType::Enum(&["LOCAL", "S3"]),
        default: "LOCAL",
        doc: "Object backend: a local directory or an S3-compatible store",
    },
    Param {
        name: "Backend_Dir",
        ty: ParamType::Path,
        default: "<Data_Dir>/backend",
        doc: "Directory of the LOCAL backend",
    },
    Param {
        name: "S3_Endpoint",
        ty: ParamType::Text,
        default: "",
        doc: "S3 endpoint URL (http:// or https://); required when Backend = S3",
    },
    Param {
        name: "S3_Region",
        ty: ParamType::Text,
        default: "us-east-1",
        doc: "S3 region",
    },
    Param {
        name: "S3_Bucket",
        ty: ParamType::Text,
        default: "",
        doc: "S3 bucket (3-63 of a-z 0-9 . -); required when Backend = S3",
    },
    Param {
        name: "S3_Prefix",
        ty: ParamType::Text,
        default: "",
        doc: "Key prefix inside the bucket",
    },
    Param {
        name: "S3_Credentials_File",
        ty: ParamType::Path,
        default: "",
        doc: "File with the S3 access key and secret (AWS shared-credentials format, [default]); none = AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the gateway's environment",
    },
    Param {
        name: "S3_Addressing",
        ty: ParamType::Enum(&["PATH", "VIRTUAL_HOST"]),
        default: "PATH",
        doc: "S3 addressing: PATH (<endpoint>/<bucket>/<key>, every store) or VIRTUAL_HOST (<bucket>.<host>)",
    },
    Param {
        name: "S3_Request_Timeout",
        ty: ParamType::Seconds { min: 1, max: 3600 },
        default: "120",
        doc: "Bound of one attempt of one S3 request (connecting is bounded by 5 s); failed attempts are retried with backoff",
    },
    Param {
        name: "S3_Unsafe_Single_Writer",
        ty: ParamType::Enum(&["false", "true"]),
        default: "false",
        doc: "Run on a store whose conditional writes failed the probe at start: only safe if this gateway is the bucket prefix's only writer ever (no fencing of a second gateway, no take-over)",
    },
    Param {
        name: "Zero_Detect",
        ty: ParamType::Enum(&["true", "false"]),
        default: "true",
        doc: "A write of whole 4 KiB clusters of zeros to a volume unmaps them (they read as zeros and take no space) instead of storing them",
    },
    Param {
        name: "Volume_Suffixes",
        ty: ParamType::List,
        default: DEFAULT_VOLUME_SUFFIXES,
        doc: "A new file whose name ends in one of these is a volume (VM disk); \"\" = none",
    },
    Param {
        name: "Extent_Cache_Size",
        ty: ParamType::Size {
            min: 16 * MIB,
            max: TIB,
        },
        default: "1G",
        doc: "Bound of the FileDriver's local extent cache",
    },
    Param {
        name: "SCO_Size",
        ty: ParamType::Size {
            min: 64 * KIB,
            max: 256 * MIB,
        },
        default: "4M",
        doc: "Size of a volume's SCO (Storage Container Object); a multiple of 4K",
    },
    Param {
        name: "TLog_SCOs",
        ty: ParamType::Count { min: 1, max: 1024 },
        default: "16",
        doc: "SCOs covered by one TLog",
    },
    Param {
        name: "Checkpoint_TLogs",
        ty: ParamType::Count { min: 1, max: 65536 },
        default: "64",
        doc: "Per volume: TLogs between two metadata checkpoints on the backend (a backend restart replays at most this many)",
    },
    Param {
        name: "SCO_Max_Age",
        ty: ParamType::Seconds { min: 1, max: 86400 },
        default: "60",
        doc: "Age after which a partly filled SCO is uploaded anyway",
    },
    Param {
        name: "SCO_Cache_Size",
        ty: ParamType::Size {
            min: 64 * MIB,
            max: 64 * TIB,
        },
        default: "8G",
        doc: "Bound of the local SCO cache (write buffer + read cache); at least 4 SCOs",
    },
    Param {
        name: "Write_Buffer_Size",
        ty: ParamType::Size {
            min: 16 * MIB,
            max: TIB,
        },
        default: "1G",
        doc: "Per volume: data not yet on the backend at which writes wait for room (the hard mark); at least 1 SCO",
    },
    Param {
        name: "File_Write_Buffer_Size",
        ty: ParamType::Size {
            min: 16 * MIB,
            max: TIB,
        },
        default: "1G",
        doc: "Gateway-wide: regular files' committed data kept in the local file journal until it is on the backend; writes are paced from Write_Throttle_Start % of it and wait for room at it",
    },
    Param {
        name: "File_Upload_Delay",
        ty: ParamType::Seconds { min: 0, max: 3600 },
        default: "10",
        doc: "Regular files' committed data waits in the file journal about this long before its extents are uploaded, so that rewrites of an extent meanwhile cost one upload; sooner when the journal passes Write_Throttle_Start % of File_Write_Buffer_Size, dirty extents fill half of Extent_Cache_Size, or strata sync --wait asks",
    },
    Param {
        name: "Namespace_Upload_Interval",
        ty: ParamType::Seconds { min: 1, max: 3600 },
        default: "30",
        doc: "The namespace (names, attributes, links, which file is a volume, regular files' extent maps) is uploaded to the backend as a new image at most this often while it changes, and at strata sync --wait: what strata restore brings back after the data directory is lost is at most about this old. Deleting a volume's backend objects and superseded file extents waits for the next image (taken at once when something waits)",
    },
    Param {
        name: "Write_Throttle_Start",
        ty: ParamType::Count { min: 1, max: 100 },
        default: "50",
        doc: "Per volume: percentage of Write_Buffer_Size above which each write is paced (waits a little, more the fuller the buffer and the slower the upload)",
    },
    Param {
        name: "Backend_Stall_Timeout",
        ty: ParamType::Seconds { min: 1, max: 3600 },
        default: "60",
        doc: "A write at Write_Buffer_Size is answered NFS3ERR_JUKEBOX / NFS4ERR_DELAY only once the buffer has been full and the backend made no upload progress for this long",
    },
    Param {
        name: "Cluster_Cache_Size",
        ty: ParamType::Size { min: 0, max: TIB },
        default: "1G",
        doc: "Bound of the content-addressed cluster cache shared by all volumes, a local file (`<Data_Dir>/cluster-cache`, in the page cache, not in the gateway's memory); 0 = off",
    },
    Param {
        name: "Map_Cache_Size",
        ty: ParamType::Size { min: 0, max: 64 * GIB },
        default: "64M",
        doc: "Bound of the decoded pages of the volumes' cluster maps kept for reads, shared by all volumes, in the gateway's memory; 0 = off (every READ looks its clusters up in the volume's mds.redb)",
    },
    Param {
        name: "Scrub_Interval",
        ty: ParamType::Seconds {
            min: 0,
            max: 7 * 86400,
        },
        default: "3600",
        doc: "Seconds between background scrub and GC passes over every volume; 0 = only on demand (strata scrub)",
    },
    Param {
        name: "Scrub_Threshold",
        ty: ParamType::Count { min: 1, max: 100 },
        default: "80",
        doc: "Percent: a SCO (or TLog) whose live data fell below this share of it is compacted by the scrubber, so the backend holds at most about 100/this times the live data",
    },
    Param {
        name: "Scrub_Bandwidth",
        ty: ParamType::Size { min: 0, max: 64 * GIB },
        default: "64M",
        doc: "Bytes per second a scrub reads and writes at most, per volume; 0 = unbounded",
    },
    Param {
        name: "GC_Grace",
        ty: ParamType::Seconds {
            min: 0,
            max: 30 * 86400,
        },
        default: "600",
        doc: "Seconds an object stays marked garbage before GC deletes it (after checking it once more); 0 = at once",
    },
    Param {
        name: "Metadata_Cache_Size",
        ty: ParamType::Size {
            min: MIB,
            max: 64 * GIB,
        },
        default: "64M",
        doc: "Bound of redb's cache for the namespace metadata",
    },
    Param {
        name: "Mgmt_Socket",
        ty: ParamType::Path,
        default: "<Data_Dir>/mgmt.sock",
        doc: "Unix socket of the management API (mode 0600)",
    },
];

/// The parameter of that name (case-insensitive).
pub fn find_param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

impl Param {
    /// The accepted range, as text for documentation ("" when anything of the type goes).
    pub fn range_text(&self) -> String {
        match self.ty {
            ParamType::Path => "absolute path".into(),
            ParamType::Text => String::new(),
            ParamType::Enum(words) => words.join(" \\| "),
            ParamType::Size { min, max } => format!("{} .. {}", format_size(min), format_size(max)),
            ParamType::Count { min, max } => format!("{min} .. {max}"),
            ParamType::Seconds { min, max } => format!("{min} .. {max} s"),
            ParamType::List => "comma-separated".into(),
        }
    }
}

/// The parameter table as Markdown (parameter, meaning, default, range): the source of
/// `params/PARAMS.md` and the README's configuration reference.
pub fn params_markdown() -> String {
    let mut out = String::from("| Parameter | Meaning | Default | Range |\n|---|---|---|---|\n");
    for p in PARAMS {
        let default = match p.default {
            "" if p.name == "Data_Dir" => "(required)".to_string(),
            "" => "(none)".to_string(),
            d => format!("`{d}`"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            p.name,
            p.doc,
            default,
            p.range_text()
        ));
    }
    out
}

/// A numeric parameter's default and bounds, as numbers (bytes, a count, or seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number {
    /// The default.
    pub default: u64,
    /// Smallest accepted.
    pub min: u64,
    /// Largest accepted.
    pub max: u64,
}

/// The default and bounds of the numeric parameter `name` (a size, count or seconds); `None`
/// for another type or an unknown name.
pub fn number(name: &str) -> Option<Number> {
    let p = find_param(name)?;
    let (min, max) = match p.ty {
        ParamType::Size { min, max }
        | ParamType::Count { min, max }
        | ParamType::Seconds { min, max } => (min, max),
        _ => return None,
    };
    match check_value(p, p.default) {
        Ok(Value::Number(default)) => Some(Number { default, min, max }),
        _ => None,
    }
}

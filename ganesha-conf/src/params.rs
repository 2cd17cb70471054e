//! The parameter table of the `STRATA { }` block (DESIGN §7): one place from which both
//! `strata conf check` and the FSAL's Ganesha config items are built.
//!
//! In ganesha.conf every parameter takes exactly one value. Ganesha's lexer splits bare words
//! such as `4M` or `-flat.vmdk`, so sizes with a suffix, suffix lists and paths are written
//! quoted: `SCO_Size = "4M"; Volume_Suffixes = "-flat.vmdk, .raw";`. Names are
//! case-insensitive, as everywhere in Ganesha. For the FSAL: declare every name of [`PARAMS`] as
//! a string item of the `STRATA` block, then take the validated values from
//! [`crate::load_strata_settings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

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

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

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
        doc: "File with the S3 access key and secret; none = the environment",
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
        doc: "Bound of the content-addressed cluster cache shared by all volumes; 0 = off",
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
/// `ganesha-conf/PARAMS.md` and the README's configuration reference.
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

/// Parses a byte size: a whole number with an optional K, M, G or T suffix (1024-based, either
/// case). Rejects garbage, fractions and overflow with a reason.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], KIB),
        Some('m' | 'M') => (&t[..t.len() - 1], MIB),
        Some('g' | 'G') => (&t[..t.len() - 1], GIB),
        Some('t' | 'T') => (&t[..t.len() - 1], TIB),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a size (a whole number with an optional K, M, G or T suffix, e.g. 4M)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a byte count with the largest exact K/M/G/T suffix.
pub fn format_size(bytes: u64) -> String {
    for (unit, m) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

fn parse_whole(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A typed value of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Path(PathBuf),
    Text(String),
    Number(u64),
    List(Vec<String>),
}

/// Checks one value against its parameter's type and range.
fn check_value(p: &Param, raw: &str) -> Result<Value, String> {
    let name = p.name;
    match p.ty {
        ParamType::Path => {
            if raw.is_empty() {
                Err(format!("{name} is empty; give an absolute path"))
            } else if !raw.starts_with('/') {
                Err(format!("{name} = \"{raw}\" is not an absolute path"))
            } else if raw.contains('\0') {
                Err(format!("{name} contains a NUL byte"))
            } else {
                Ok(Value::Path(PathBuf::from(raw)))
            }
        }
        ParamType::Text => Ok(Value::Text(raw.to_string())),
        ParamType::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(raw.trim()))
            .map(|w| Value::Text(w.to_string()))
            .ok_or_else(|| format!("{name} = \"{raw}\" is not one of {}", words.join(", "))),
        ParamType::Size { min, max } => {
            let n = parse_size(raw).map_err(|e| format!("{name}: {e}"))?;
            if n < min || n > max {
                return Err(format!(
                    "{name} = {raw} is out of range {} .. {}",
                    format_size(min),
                    format_size(max)
                ));
            }
            Ok(Value::Number(n))
        }
        ParamType::Count { min, max } => {
            let n =
                parse_whole(raw).ok_or_else(|| format!("{name}: `{raw}` is not a whole number"))?;
            if n < min || n > max {
                return Err(format!("{name} = {raw} is out of range {min} .. {max}"));
            }
            Ok(Value::Number(n))
        }
        ParamType::Seconds { min, max } => {
            let t = raw.trim();
            let t = t.strip_suffix(['s', 'S']).unwrap_or(t);
            let n = parse_whole(t).ok_or_else(|| {
                format!("{name}: `{raw}` is not a number of seconds (e.g. 60 or 60s)")
            })?;
            if n < min || n > max {
                return Err(format!("{name} = {raw} is out of range {min} .. {max} s"));
            }
            Ok(Value::Number(n))
        }
        ParamType::List => {
            let items: Vec<String> = raw
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = items.iter().find(|s| s.contains('/') || s.contains(' ')) {
                return Err(format!(
                    "{name}: `{bad}` cannot be a name suffix (no `/` or spaces)"
                ));
            }
            Ok(Value::List(items))
        }
    }
}

/// One `Name = value;` of the STRATA block, as read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    /// The name as written.
    pub name: String,
    /// The value, unquoted.
    pub value: String,
    /// 1-based line.
    pub line: u32,
}

impl RawSetting {
    /// A setting with that name, value and line.
    pub fn new(name: &str, value: &str, line: u32) -> RawSetting {
        RawSetting {
            name: name.to_string(),
            value: value.to_string(),
            line,
        }
    }
}

/// One error in the STRATA block: line and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// 1-based line (of the setting, or of the block for a missing one).
    pub line: u32,
    /// What is wrong.
    pub reason: String,
}

/// The validated settings of a `STRATA { }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrataSettings {
    /// Local state directory.
    pub data_dir: PathBuf,
    /// `LOCAL` or `S3`.
    pub backend: BackendKind,
    /// Local backend directory.
    pub backend_dir: PathBuf,
    /// S3 endpoint URL.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: String,
    /// S3 bucket.
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    pub s3_prefix: String,
    /// File with S3 credentials.
    pub s3_credentials_file: Option<PathBuf>,
    /// Suffixes that make a new file a volume.
    pub volume_suffixes: Vec<String>,
    /// FileDriver extent cache bound, bytes.
    pub extent_cache_size: u64,
    /// SCO size, bytes.
    pub sco_size: u64,
    /// SCOs per TLog.
    pub tlog_scos: u64,
    /// TLogs between two metadata checkpoints of a volume.
    pub checkpoint_tlogs: u64,
    /// Age after which a partial SCO is uploaded.
    pub sco_max_age: Duration,
    /// SCO cache bound, bytes.
    pub sco_cache_size: u64,
    /// Per-volume bound of data not yet on the backend, bytes.
    pub write_buffer_size: u64,
    /// Percentage of `write_buffer_size` above which writes are paced.
    pub write_throttle_start: u64,
    /// How long the backend may make no progress before a write at the hard mark is refused.
    pub backend_stall_timeout: Duration,
    /// Cluster cache bound, bytes.
    pub cluster_cache_size: u64,
    /// redb cache bound, bytes.
    pub metadata_cache_size: u64,
    /// Management socket path.
    pub mgmt_socket: PathBuf,
}

/// The backend kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A local directory.
    Local,
    /// An S3-compatible store.
    S3,
}

impl StrataSettings {
    /// The defaults of every parameter with this data directory (absolute).
    pub fn with_data_dir(data_dir: &Path) -> Result<StrataSettings, Vec<ParamError>> {
        StrataSettings::from_pairs(
            &[RawSetting::new(
                "Data_Dir",
                &data_dir.display().to_string(),
                1,
            )],
            1,
        )
    }

    /// Validates the settings of a STRATA block: every name must be in [`PARAMS`]
    /// (case-insensitive) and set at most once, every value must fit its type and range,
    /// `Data_Dir` is required, `Backend = S3` requires `S3_Endpoint` and `S3_Bucket`, and the
    /// sizes must agree (SCO_Size a multiple of 4K; SCO_Cache_Size at least 4 SCOs;
    /// Write_Buffer_Size at least 1 SCO). `block_line` is the line of `STRATA {`, used for
    /// errors about missing settings. Returns every error found.
    pub fn from_pairs(
        pairs: &[RawSetting],
        block_line: u32,
    ) -> Result<StrataSettings, Vec<ParamError>> {
        let mut errs = Vec::new();
        // (value, line) per parameter, indexed like PARAMS.
        let mut set: Vec<Option<(Value, u32)>> = vec![None; PARAMS.len()];
        let mut seen: Vec<Option<u32>> = vec![None; PARAMS.len()];
        for s in pairs {
            let Some(i) = PARAMS
                .iter()
                .position(|p| p.name.eq_ignore_ascii_case(&s.name))
            else {
                let hint = PARAMS
                    .iter()
                    .find(|p| similar(p.name, &s.name))
                    .map(|p| format!(" (did you mean {}?)", p.name))
                    .unwrap_or_default();
                errs.push(ParamError {
                    line: s.line,
                    reason: format!("unknown parameter {} in the STRATA block{hint}", s.name),
                });
                continue;
            };
            if let Some(first) = seen[i] {
                errs.push(ParamError {
                    line: s.line,
                    reason: format!("{} is already set on line {first}", PARAMS[i].name),
                });
                continue;
            }
            seen[i] = Some(s.line);
            match check_value(&PARAMS[i], &s.value) {
                Ok(v) => set[i] = Some((v, s.line)),
                Err(reason) => errs.push(ParamError {
                    line: s.line,
                    reason,
                }),
            }
        }

        // Accessors by name; a name missing from PARAMS would be a bug caught by unit tests.
        let get = |name: &str| -> Option<&(Value, u32)> {
            let i = PARAMS.iter().position(|p| p.name == name)?;
            set[i].as_ref()
        };
        let default_of = |name: &str| -> Value {
            match PARAMS.iter().find(|p| p.name == name) {
                Some(p) => check_value(p, p.default).unwrap_or(Value::Text(String::new())),
                None => Value::Text(String::new()),
            }
        };
        let number = |name: &str| -> u64 {
            match get(name)
                .map(|(v, _)| v.clone())
                .unwrap_or_else(|| default_of(name))
            {
                Value::Number(n) => n,
                _ => 0,
            }
        };
        let text = |name: &str| -> Option<String> {
            match get(name).map(|(v, _)| v) {
                Some(Value::Text(t)) => Some(t.clone()),
                _ => None,
            }
        };
        let path = |name: &str| -> Option<PathBuf> {
            match get(name).map(|(v, _)| v) {
                Some(Value::Path(p)) => Some(p.clone()),
                _ => None,
            }
        };
        let line_of = |name: &str| get(name).map(|(_, l)| *l).unwrap_or(block_line);
        let was_seen = |name: &str| {
            PARAMS
                .iter()
                .position(|p| p.name == name)
                .and_then(|i| seen[i])
                .is_some()
        };

        let data_dir = path("Data_Dir");
        let data_dir_set = data_dir.is_some();
        if !was_seen("Data_Dir") {
            errs.push(ParamError {
                line: block_line,
                reason:
                    "Data_Dir is required in the STRATA block, e.g. Data_Dir = \"/var/lib/strata\";"
                        .into(),
            });
        }
        let backend = match text("Backend").as_deref() {
            Some("S3") => BackendKind::S3,
            _ => BackendKind::Local,
        };
        let s3_endpoint = text("S3_Endpoint").filter(|e| !e.is_empty());
        let s3_bucket = text("S3_Bucket").filter(|b| !b.is_empty());
        if let Some(e) = &s3_endpoint {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.map(|r| r.is_empty()).unwrap_or(true) {
                errs.push(ParamError {
                    line: line_of("S3_Endpoint"),
                    reason: format!("S3_Endpoint = \"{e}\" is not an http:// or https:// URL"),
                });
            }
        }
        if let Some(b) = &s3_bucket {
            let ok = (3..=63).contains(&b.len())
                && b.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'
                });
            if !ok {
                errs.push(ParamError {
                    line: line_of("S3_Bucket"),
                    reason: format!(
                        "S3_Bucket = \"{b}\" is not a bucket name (3-63 of a-z, 0-9, `.`, `-`)"
                    ),
                });
            }
        }
        if backend == BackendKind::S3 {
            for (name, missing) in [
                ("S3_Endpoint", s3_endpoint.is_none()),
                ("S3_Bucket", s3_bucket.is_none()),
            ] {
                if missing {
                    errs.push(ParamError {
                        line: line_of("Backend"),
                        reason: format!("Backend = S3 requires {name}"),
                    });
                }
            }
        }

        let sco_size = number("SCO_Size");
        if !sco_size.is_multiple_of(4 * KIB) {
            errs.push(ParamError {
                line: line_of("SCO_Size"),
                reason: format!(
                    "SCO_Size = {} is not a multiple of 4K",
                    format_size(sco_size)
                ),
            });
        }
        let sco_cache_size = number("SCO_Cache_Size");
        if sco_cache_size < 4 * sco_size {
            errs.push(ParamError {
                line: line_of("SCO_Cache_Size"),
                reason: format!(
                    "SCO_Cache_Size = {} must hold at least 4 SCOs of SCO_Size = {}",
                    format_size(sco_cache_size),
                    format_size(sco_size)
                ),
            });
        }
        let write_buffer_size = number("Write_Buffer_Size");
        if write_buffer_size < sco_size {
            errs.push(ParamError {
                line: line_of("Write_Buffer_Size"),
                reason: format!(
                    "Write_Buffer_Size = {} must hold at least one SCO of SCO_Size = {}",
                    format_size(write_buffer_size),
                    format_size(sco_size)
                ),
            });
        }

        let data_dir = data_dir.unwrap_or_default();
        let mgmt_socket = path("Mgmt_Socket").unwrap_or_else(|| data_dir.join("mgmt.sock"));
        if data_dir_set && mgmt_socket.as_os_str().len() > MAX_SOCKET_PATH {
            let (line, how) = if was_seen("Mgmt_Socket") {
                (line_of("Mgmt_Socket"), "choose a shorter path")
            } else {
                (line_of("Data_Dir"), "set a shorter Mgmt_Socket")
            };
            errs.push(ParamError {
                line,
                reason: format!(
                    "Mgmt_Socket {} is longer than {MAX_SOCKET_PATH} bytes, too long for a Unix socket; {how}",
                    mgmt_socket.display()
                ),
            });
        }
        let volume_suffixes = match get("Volume_Suffixes")
            .map(|(v, _)| v.clone())
            .unwrap_or_else(|| default_of("Volume_Suffixes"))
        {
            Value::List(l) => l,
            _ => Vec::new(),
        };

        if !errs.is_empty() {
            errs.sort_by_key(|e| e.line);
            return Err(errs);
        }
        Ok(StrataSettings {
            backend_dir: path("Backend_Dir").unwrap_or_else(|| data_dir.join("backend")),
            backend,
            s3_endpoint,
            s3_region: text("S3_Region").unwrap_or_else(|| "us-east-1".to_string()),
            s3_bucket,
            s3_prefix: text("S3_Prefix").unwrap_or_default(),
            s3_credentials_file: path("S3_Credentials_File"),
            volume_suffixes,
            extent_cache_size: number("Extent_Cache_Size"),
            sco_size,
            tlog_scos: number("TLog_SCOs"),
            checkpoint_tlogs: number("Checkpoint_TLogs"),
            sco_max_age: Duration::from_secs(number("SCO_Max_Age")),
            sco_cache_size,
            write_buffer_size,
            write_throttle_start: number("Write_Throttle_Start"),
            backend_stall_timeout: Duration::from_secs(number("Backend_Stall_Timeout")),
            cluster_cache_size: number("Cluster_Cache_Size"),
            metadata_cache_size: number("Metadata_Cache_Size"),
            mgmt_socket,
            data_dir,
        })
    }
}

/// A cheap "did you mean": same letters ignoring case and `_`, one edit or one swap of
/// neighbours apart.
fn similar(known: &str, typed: &str) -> bool {
    let norm = |s: &str| -> Vec<u8> {
        s.bytes()
            .filter(|b| *b != b'_')
            .map(|b| b.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (norm(known), norm(typed));
    if a == b {
        return true;
    }
    // One transposition of neighbours ("Szie").
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        if let [i, j] = diff[..] {
            if j == i + 1 && a[i] == b[j] && a[j] == b[i] {
                return true;
            }
        }
    }
    // Levenshtein distance <= 1.
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<StrataSettings, Vec<ParamError>> {
        let raw: Vec<RawSetting> = std::iter::once(RawSetting::new("Data_Dir", "/d", 2))
            .chain(
                pairs
                    .iter()
                    .enumerate()
                    .map(|(i, (n, v))| RawSetting::new(n, v, 3 + i as u32)),
            )
            .collect();
        StrataSettings::from_pairs(&raw, 1)
    }

    fn one_error(pairs: &[(&str, &str)]) -> ParamError {
        let errs = settings(pairs).expect_err("should be refused");
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size(" 8G "), Ok(8 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        for bad in [
            "", "M", "4MB", "1.5G", "-1", "4 M", "0x10", "four", "4Q", "1e9",
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains("not a size"), "{bad}: {e}");
        }
        assert!(parse_size("18446744073709551615").is_ok());
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("16777216T").unwrap_err().contains("too large"));
        assert_eq!(format_size(64 * KIB), "64K");
        assert_eq!(format_size(3 * MIB + 1), (3 * MIB + 1).to_string());
    }

    #[test]
    fn defaults() {
        let s = StrataSettings::with_data_dir(Path::new("/var/lib/strata")).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/strata"));
        assert_eq!(s.backend, BackendKind::Local);
        assert_eq!(s.backend_dir, PathBuf::from("/var/lib/strata/backend"));
        assert_eq!(s.mgmt_socket, PathBuf::from("/var/lib/strata/mgmt.sock"));
        assert_eq!(s.s3_region, "us-east-1");
        assert_eq!(s.s3_prefix, "");
        assert_eq!(s.s3_endpoint, None);
        assert_eq!(
            s.volume_suffixes,
            vec![
                "-flat.vmdk",
                "-delta.vmdk",
                "-sesparse.vmdk",
                ".vswp",
                ".raw",
                ".img",
                ".qcow2"
            ]
        );
        assert_eq!(s.extent_cache_size, GIB);
        assert_eq!(s.sco_size, 4 * MIB);
        assert_eq!(s.tlog_scos, 16);
        assert_eq!(s.sco_max_age, Duration::from_secs(60));
        assert_eq!(s.sco_cache_size, 8 * GIB);
        assert_eq!(s.write_buffer_size, GIB);
        assert_eq!(s.cluster_cache_size, GIB);
        assert_eq!(s.metadata_cache_size, 64 * MIB);
    }

    #[test]
    fn every_default_is_valid_for_its_type() {
        for p in PARAMS {
            if p.default.is_empty() || p.default.starts_with('<') {
                continue;
            }
            check_value(p, p.default).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }

    #[test]
    fn all_values_set_and_names_case_insensitive() {
        let s = settings(&[
            ("backend", "s3"),
            ("BACKEND_DIR", "/b"),
            ("S3_Endpoint", "http://127.0.0.1:8333"),
            ("S3_Region", "eu-west-1"),
            ("S3_Bucket", "vm-store.1"),
            ("S3_Prefix", "gw1/"),
            ("S3_Credentials_File", "/etc/strata/s3"),
            ("Volume_Suffixes", " .raw ,-flat.vmdk,, "),
            ("Extent_Cache_Size", "32M"),
            ("sco_size", "64K"),
            ("TLog_SCOs", "1"),
            ("SCO_Max_Age", "5s"),
            ("SCO_Cache_Size", "64M"),
            ("Write_Buffer_Size", "16M"),
            ("Cluster_Cache_Size", "0"),
            ("Metadata_Cache_Size", "1M"),
            ("Mgmt_Socket", "/run/strata.sock"),
        ])
        .unwrap();
        assert_eq!(s.backend, BackendKind::S3);
        assert_eq!(s.backend_dir, PathBuf::from("/b"));
        assert_eq!(s.s3_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s.s3_region, "eu-west-1");
        assert_eq!(s.s3_bucket.as_deref(), Some("vm-store.1"));
        assert_eq!(s.s3_prefix, "gw1/");
        assert_eq!(s.s3_credentials_file, Some(PathBuf::from("/etc/strata/s3")));
        assert_eq!(s.volume_suffixes, vec![".raw", "-flat.vmdk"]);
        assert_eq!(s.extent_cache_size, 32 * MIB);
        assert_eq!(s.sco_size, 64 * KIB);
        assert_eq!(s.tlog_scos, 1);
        assert_eq!(s.sco_max_age, Duration::from_secs(5));
        assert_eq!(s.sco_cache_size, 64 * MIB);
        assert_eq!(s.write_buffer_size, 16 * MIB);
        assert_eq!(s.cluster_cache_size, 0);
        assert_eq!(s.metadata_cache_size, MIB);
        assert_eq!(s.mgmt_socket, PathBuf::from("/run/strata.sock"));
        assert!(settings(&[("Volume_Suffixes", "")])
            .unwrap()
            .volume_suffixes
            .is_empty());
    }

    #[test]
    fn every_bounded_parameter_refuses_below_and_above_its_range() {
        for p in PARAMS {
            let (min, max, fmt): (u64, u64, fn(u64) -> String) = match p.ty {
                ParamType::Size { min, max } => (min, max, |n| n.to_string()),
                ParamType::Count { min, max } => (min, max, |n| n.to_string()),
                ParamType::Seconds { min, max } => (min, max, |n| format!("{n}s")),
                _ => continue,
            };
            // The bounds themselves are accepted by the value check.
            check_value(p, &fmt(min)).unwrap_or_else(|e| panic!("{} min: {e}", p.name));
            check_value(p, &fmt(max)).unwrap_or_else(|e| panic!("{} max: {e}", p.name));
            if min > 0 {
                let e = one_error(&[(p.name, &fmt(min - 1))]);
                assert_eq!(e.line, 3, "{}", p.name);
                assert!(
                    e.reason.contains("out of range"),
                    "{}: {}",
                    p.name,
                    e.reason
                );
                assert!(e.reason.starts_with(p.name), "{}", e.reason);
            }
            let e = one_error(&[(p.name, &fmt(max + 1))]);
            assert_eq!(e.line, 3);
            assert!(
                e.reason.contains("out of range"),
                "{}: {}",
                p.name,
                e.reason
            );
            let e = one_error(&[(p.name, "lots")]);
            assert!(e.reason.contains("lots"), "{}: {}", p.name, e.reason);
        }
    }

    #[test]
    fn enum_path_and_list_errors() {
        let e = one_error(&[("Backend", "NFS")]);
        assert!(e.reason.contains("not one of LOCAL, S3"), "{}", e.reason);
        for p in ["Backend_Dir", "S3_Credentials_File", "Mgmt_Socket"] {
            let e = one_error(&[(p, "relative/dir")]);
            assert!(e.reason.contains("not an absolute path"), "{}", e.reason);
            let e = one_error(&[(p, "")]);
            assert!(e.reason.contains("is empty"), "{}", e.reason);
        }
        let e = one_error(&[("Volume_Suffixes", ".raw, a/b")]);
        assert!(e.reason.contains("a/b"), "{}", e.reason);
        let errs =
            StrataSettings::from_pairs(&[RawSetting::new("Data_Dir", "var/x", 4)], 3).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 4);
        assert!(errs[0].reason.contains("not an absolute path"), "{errs:?}");
    }

    #[test]
    fn sco_size_alignment_and_cross_checks() {
        let e = one_error(&[("SCO_Size", "65537")]);
        assert!(e.reason.contains("multiple of 4K"), "{}", e.reason);
        let e = one_error(&[("SCO_Size", "256M"), ("SCO_Cache_Size", "512M")]);
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("at least 4 SCOs"), "{}", e.reason);
        let e = one_error(&[("SCO_Size", "32M"), ("Write_Buffer_Size", "16M")]);
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("at least one SCO"), "{}", e.reason);
    }

    #[test]
    fn unknown_duplicate_and_missing() {
        let e = one_error(&[("SCO_Szie", "4M")]);
        assert_eq!(e.line, 3);
        assert!(
            e.reason.contains("unknown parameter SCO_Szie"),
            "{}",
            e.reason
        );
        assert!(e.reason.contains("did you mean SCO_Size?"), "{}", e.reason);
        let e = one_error(&[("Frobnicate", "1")]);
        assert!(!e.reason.contains("did you mean"), "{}", e.reason);
        let e = one_error(&[("TLog_SCOs", "8"), ("tlog_scos", "9")]);
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("already set on line 3"), "{}", e.reason);
        let errs = StrataSettings::from_pairs(&[], 7).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 7);
        assert!(errs[0].reason.contains("Data_Dir is required"));
    }

    #[test]
    fn s3_requirements() {
        let errs = settings(&[("Backend", "S3")]).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.line == 3));
        assert!(errs[0].reason.contains("requires S3_Endpoint"));
        assert!(errs[1].reason.contains("requires S3_Bucket"));
        let e = one_error(&[("S3_Endpoint", "127.0.0.1:9000")]);
        assert!(e.reason.contains("not an http"), "{}", e.reason);
        let e = one_error(&[("S3_Bucket", "Upper_Case")]);
        assert!(e.reason.contains("not a bucket name"), "{}", e.reason);
        // S3 settings without Backend = S3 are accepted (ready for a switch).
        settings(&[("S3_Bucket", "abc")]).unwrap();
    }

    #[test]
    fn socket_path_length() {
        let long = format!("/{}", "d".repeat(100));
        let errs =
            StrataSettings::from_pairs(&[RawSetting::new("Data_Dir", &long, 2)], 1).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].reason.contains("set a shorter Mgmt_Socket"));
        StrataSettings::from_pairs(
            &[
                RawSetting::new("Data_Dir", &long, 2),
                RawSetting::new("Mgmt_Socket", "/run/s.sock", 3),
            ],
            1,
        )
        .unwrap();
    }

    #[test]
    fn table_is_complete_and_unique() {
        let names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "Data_Dir",
                "Backend",
                "Backend_Dir",
                "S3_Endpoint",
                "S3_Region",
                "S3_Bucket",
                "S3_Prefix",
                "S3_Credentials_File",
                "Volume_Suffixes",
                "Extent_Cache_Size",
                "SCO_Size",
                "TLog_SCOs",
                "Checkpoint_TLogs",
                "SCO_Max_Age",
                "SCO_Cache_Size",
                "Write_Buffer_Size",
                "Write_Throttle_Start",
                "Backend_Stall_Timeout",
                "Cluster_Cache_Size",
                "Metadata_Cache_Size",
                "Mgmt_Socket",
            ]
        );
        for p in PARAMS {
            assert!(!p.doc.is_empty());
            assert!(std::ptr::eq(find_param(&p.name.to_lowercase()).unwrap(), p));
        }
    }

    #[test]
    fn params_md_is_in_sync() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("PARAMS.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains(&params_markdown()),
            "{} is out of date; paste the table printed by `strata conf params`:\n{}",
            path.display(),
            params_markdown()
        );
    }
}

//! A whole `STRATA { }` block validated: [`StrataSettings`], with every rule that involves more
//! than one parameter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::table::{MAX_SOCKET_PATH, PARAMS};
use crate::value::{check_value, format_size, Value};
use crate::KIB;

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
    /// Virtual-host addressing instead of path-style.
    pub s3_virtual_host: bool,
    /// Bound of one attempt of one S3 request.
    pub s3_request_timeout: Duration,
    /// Skip the conditional-write probe (one writer, no fencing).
    pub s3_unsafe_single_writer: bool,
    /// `Zero_Detect`: whole clusters of zeros written to a volume are unmapped.
    pub zero_detect: bool,
    /// Suffixes that make a new file a volume.
    pub volume_suffixes: Vec<String>,
    /// FileDriver extent cache bound, bytes.
    pub extent_cache_size: u64,
    /// SCO size, bytes.
    pub sco_size: u64,
    /// SCOs per TLog.
    pub tlog_scos: u32,
    /// TLogs between two metadata checkpoints of a volume.
    pub checkpoint_tlogs: u32,
    /// Age after which a partial SCO is uploaded.
    pub sco_max_age: Duration,
    /// SCO cache bound, bytes.
    pub sco_cache_size: u64,
    /// Per-volume bound of data not yet on the backend, bytes.
    pub write_buffer_size: u64,
    /// Gateway-wide bound of regular files' data not yet on the backend (the file journal).
    pub file_write_buffer_size: u64,
    /// How long regular files' committed data waits in the journal before it is uploaded.
    pub file_upload_delay: Duration,
    /// How often, at most, the namespace is uploaded as a new image while it changes.
    pub namespace_upload_interval: Duration,
    /// Percentage of `write_buffer_size` above which writes are paced.
    pub write_throttle_start: u64,
    /// How long the backend may make no progress before a write at the hard mark is refused.
    pub backend_stall_timeout: Duration,
    /// Cluster cache bound, bytes.
    pub cluster_cache_size: u64,
    /// `Map_Cache_Size`: bytes of decoded cluster-map pages kept for reads (0: off).
    pub map_cache_size: u64,
    /// Time between background scrub passes (zero: only on demand).
    pub scrub_interval: Duration,
    /// Percent of live data below which a SCO is compacted.
    pub scrub_threshold: u64,
    /// Bytes per second a scrub moves at most (0: unbounded).
    pub scrub_bandwidth: u64,
    /// How long garbage stays marked before it is deleted.
    pub gc_grace: Duration,
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
        // A count the table bounds below 2^32 (a test checks the bounds).
        let count_u32 = |name: &str| -> u32 { u32::try_from(number(name)).unwrap_or(u32::MAX) };
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
            let authority = rest.map(|r| r.split('/').next().unwrap_or(""));
            if authority.map(str::is_empty).unwrap_or(true) {
                errs.push(ParamError {
                    line: line_of("S3_Endpoint"),
                    reason: format!("S3_Endpoint = \"{e}\" is not an http:// or https:// URL"),
                });
            } else if authority.is_some_and(|a| a.contains('@')) {
                // Never echo it: the part before '@' may be a secret.
                errs.push(ParamError {
                    line: line_of("S3_Endpoint"),
                    reason: "S3_Endpoint must not carry credentials (user@host): put them in \
                             S3_Credentials_File"
                        .into(),
                });
            }
        }
        if let Some(p) = text("S3_Prefix").filter(|p| !p.is_empty()) {
            let bad = p.starts_with('/')
                || p.contains('\0')
                || p.strip_suffix('/')
                    .unwrap_or(&p)
                    .split('/')
                    .any(|seg| seg.is_empty() || seg == "." || seg == "..");
            if bad {
                errs.push(ParamError {
                    line: line_of("S3_Prefix"),
                    reason: format!(
                        "S3_Prefix = \"{p}\" is not a key prefix (segments separated by single \
                         `/`, none empty, `.` or `..`, no leading `/`), e.g. \"gw1/\""
                    ),
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
            s3_virtual_host: text("S3_Addressing").as_deref() == Some("VIRTUAL_HOST"),
            s3_request_timeout: Duration::from_secs(number("S3_Request_Timeout")),
            s3_unsafe_single_writer: text("S3_Unsafe_Single_Writer").as_deref() == Some("true"),
            zero_detect: text("Zero_Detect").as_deref() != Some("false"),
            volume_suffixes,
            extent_cache_size: number("Extent_Cache_Size"),
            sco_size,
            tlog_scos: count_u32("TLog_SCOs"),
            checkpoint_tlogs: count_u32("Checkpoint_TLogs"),
            sco_max_age: Duration::from_secs(number("SCO_Max_Age")),
            sco_cache_size,
            write_buffer_size,
            file_write_buffer_size: number("File_Write_Buffer_Size"),
            file_upload_delay: Duration::from_secs(number("File_Upload_Delay")),
            namespace_upload_interval: Duration::from_secs(number("Namespace_Upload_Interval")),
            write_throttle_start: number("Write_Throttle_Start"),
            backend_stall_timeout: Duration::from_secs(number("Backend_Stall_Timeout")),
            cluster_cache_size: number("Cluster_Cache_Size"),
            map_cache_size: number("Map_Cache_Size"),
            scrub_interval: Duration::from_secs(number("Scrub_Interval")),
            scrub_threshold: number("Scrub_Threshold"),
            scrub_bandwidth: number("Scrub_Bandwidth"),
            gc_grace: Duration::from_secs(number("GC_Grace")),
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

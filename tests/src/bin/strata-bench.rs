//! `strata-bench`: measures Strata against Ganesha's VFS and MEM FSALs in one run (issue 6).
//! `scripts/bench` builds it and runs it; run it with `--help` for its options.
//!
//! `strata-bench client URL ...` is the benchmark's own libnfs client; the benchmark runs it
//! inside each gateway's namespace.

use std::path::PathBuf;
use std::time::Duration;

#[path = "../bench/mod.rs"]
mod bench;

use bench::nfs::{self, RandJob, RandOp};
use bench::report;
use bench::run::{self, Settings, System};

const USAGE: &str = "\
usage: strata-bench [--quick] [--out FILE] [--plugin-dir DIR] [--runs N]
                    [--systems strata,vfs,mem,strata-s3] [--tmp DIR]
  --quick         one run per workload, smaller sizes (under two minutes)
  --out FILE      JSON results (default target/bench/results.json)
  --plugin-dir    directory holding libfsalstrata.so (default: $STRATA_PLUGIN_DIR, else
                  this executable's directory)
  --runs N        repetitions per workload (default 3, quick 1); the table shows the median
  --systems LIST  which systems to run (default strata,vfs,mem); strata-s3 adds Strata on
                  the S3 test server behind a 20 ms delaying proxy (an S3 table beside
                  the main one; needs scripts/setup's SeaweedFS)
  --tmp DIR       where the data directories go (default $TMPDIR or /tmp)
  --md FILE       also write the table (Markdown) to FILE
client commands (run inside a gateway namespace by the benchmark itself):
  strata-bench client URL randio read|write PATH SIZE BS QD COMMIT_EVERY SECS
  strata-bench client URL fill PATH SIZE
  strata-bench client URL unlink PATH
  strata-bench client URL smallfiles DIR COUNT create|remove";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("client") {
        std::process::exit(client(&args[1..]));
    }
    std::process::exit(match bench_main(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("strata-bench: {e}");
            1
        }
    });
}

fn parse<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{what}: {v:?} is not a valid value"))
}

/// `client URL COMMAND ARGS`: prints one key=value line; exit 1 on failure, 2 on usage.
fn client(a: &[String]) -> i32 {
    let r = (|| -> Result<String, String> {
        let url = a.first().ok_or("missing URL")?;
        let rest: Vec<&str> = a[1..].iter().map(String::as_str).collect();
        match rest.as_slice() {
            ["randio", op, path, size, bs, qd, every, secs] => {
                let op = match *op {
                    "read" => RandOp::Read,
                    "write" => RandOp::Write,
                    _ => return Err(format!("randio: {op:?} is not read or write")),
                };
                let job = RandJob {
                    op,
                    path: path.to_string(),
                    size: parse("SIZE", size)?,
                    bs: parse("BS", bs)?,
                    qd: parse("QD", qd)?,
                    commit_every: parse("COMMIT_EVERY", every)?,
                    duration: Duration::from_secs_f64(parse::<f64>("SECS", secs)?.max(0.0)),
                    seed: 42,
                };
                nfs::randio(url, &job)
            }
            ["fill", path, size] => nfs::fill(url, path, parse("SIZE", size)?),
            ["unlink", path] => nfs::unlink(url, path),
            ["smallfiles", dir, count, phase] => {
                nfs::small_files(url, dir, parse("COUNT", count)?, phase)
            }
            _ => Err(format!("unknown client command\n{USAGE}")),
        }
    })();
    match r {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            println!("error=\"{}\"", e.replace('"', "'").replace('\n', " "));
            1
        }
    }
}

fn bench_main(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut out = PathBuf::from("target/bench/results.json");
    let mut md: Option<PathBuf> = None;
    let mut plugin_dir: Option<PathBuf> = std::env::var_os("STRATA_PLUGIN_DIR").map(PathBuf::from);
    let mut runs: Option<usize> = None;
    let mut systems: Option<Vec<System>> = None;
    let mut tmp = std::env::temp_dir();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(val("--out")?),
            "--md" => md = Some(PathBuf::from(val("--md")?)),
            "--plugin-dir" => plugin_dir = Some(PathBuf::from(val("--plugin-dir")?)),
            "--runs" => runs = Some(parse("--runs", &val("--runs")?)?),
            "--tmp" => tmp = PathBuf::from(val("--tmp")?),
            "--systems" => {
                let v = val("--systems")?;
                let list = v
                    .split(',')
                    .map(|x| System::parse(x.trim()).ok_or(format!("unknown system {x:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                systems = Some(list);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let plugin_dir = match plugin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .map_err(|e| format!("current_exe: {e}"))?
            .parent()
            .map(PathBuf::from)
            .ok_or("executable has no directory")?,
    };
    let mut s = Settings::new(quick, plugin_dir, tmp);
    // The `strata` CLI built with this binary (scripts/bench builds it), for `strata sync`.
    s.strata_cli = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("strata")))
        .filter(|p| p.is_file());
    if s.strata_cli.is_none() {
        eprintln!(
            "bench: no `strata` CLI next to this binary: Strata runs are not settled with \
             `strata sync --wait` (scripts/bench builds it)"
        );
    }
    if let Some(n) = runs {
        s.runs = n.max(1);
    }
    if let Some(list) = systems {
        s.systems = list;
    }
    if s.systems.contains(&System::Strata) && !s.plugin_dir.join("libfsalstrata.so").is_file() {
        return Err(format!(
            "{} not found: build the FSAL in the same profile (scripts/bench does) or pass \
             --plugin-dir",
            s.plugin_dir.join("libfsalstrata.so").display()
        ));
    }
    for tool in ["ganesha.nfsd", "rpcbind", "qemu-img", "unshare", "nsenter"] {
        if strata_ganesha_conf::launcher::find_in_path(tool).is_none() {
            return Err(format!("{tool} is not installed (run scripts/setup)"));
        }
    }
    let command = std::iter::once("strata-bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "bench: {} mode, {} run(s) per workload, plugin dir {}",
        if quick { "quick" } else { "full" },
        s.runs,
        s.plugin_dir.display()
    );
    let machine = report::machine(&s.tmp_base);
    let results = run::run_all(&s);
    let table = report::table(&results, &s);
    println!();
    for (k, v) in &machine {
        println!("{k}: {v}");
    }
    println!("wall time: {:.0} s\n", results.wall_secs);
    println!("{table}");
    let doc = report::json(&results, &s, &command, &machine);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| format!("JSON: {e}"))?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("writing {}: {e}", out.display()))?;
    eprintln!("bench: results written to {}", out.display());
    if let Some(md) = md {
        let mut text = format!("`{command}`\n\n| machine | |\n|---|---|\n");
        for (k, v) in &machine {
            text.push_str(&format!("| {k} | {v} |\n"));
        }
        text.push_str(&format!(
            "| wall time | {:.0} s |\n\n{table}",
            results.wall_secs
        ));
        std::fs::write(&md, text).map_err(|e| format!("writing {}: {e}", md.display()))?;
    }
    Ok(())
}

//! The volume manifest on the backend: which TLogs (in order) make up the volume. Written with
//! quick-xml and replaced with a conditional PUT, so a lost race or a second writer is detected
//! instead of silently overwriting (see `FORMATS.md`, "Backend").

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use quick_xml::{Reader, Writer};

use super::keys::Epochs;
use crate::volume::clone::{Ancestor, Lineage};
use crate::volume::format::{FormatError, VolumeId, CLUSTER_SIZE};

/// Object name of the manifest inside the volume's backend namespace.
pub(crate) const MANIFEST_NAME: &str = "manifest.xml";
/// Manifest format version written (2: data keys carry the upload epoch; 3 for a clone or a
/// template, which a build before clones must refuse rather than read as a whole volume).
pub(crate) const MANIFEST_FORMAT: u32 = 3;
/// The format written for a volume that is neither a clone nor a template.
const MANIFEST_FORMAT_PLAIN: u32 = 2;
/// The oldest format read (1: no epochs, every key without one).
const MANIFEST_FORMAT_MIN: u32 = 1;

/// The volume manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The volume.
    pub volume: VolumeId,
    /// Bumped on every rewrite.
    pub generation: u64,
    /// The TLogs on the backend, oldest first, as an inclusive range of sequence numbers
    /// (TLogs are contiguous); `None` when no TLog is on the backend yet.
    pub tlogs: Option<(u64, u64)>,
    /// The newest metadata checkpoint on the backend: the MetaDataStore as of TLog N, written
    /// in epoch E (`mds/<N>.<E>/index`), as `(N, E)`; `None` when there is none.
    pub checkpoint: Option<(u64, u64)>,
    /// The epoch each named TLog (and the SCOs it seals) was uploaded in.
    pub epochs: Epochs,
    /// The volumes a clone reads from, oldest first (empty: none).
    pub lineage: Lineage,
    /// The snapshot id a template was made at (0: not a template).
    pub template: u64,
}

impl Manifest {
    /// An empty manifest for `volume` (generation 0, no TLogs).
    pub(crate) fn new(volume: VolumeId) -> Manifest {
        Manifest {
            volume,
            generation: 0,
            tlogs: None,
            checkpoint: None,
            epochs: Epochs::default(),
            lineage: Lineage::default(),
            template: 0,
        }
    }

    /// The last TLog whose effect the backend holds: the last one named, else the
    /// checkpoint's or the lineage's (0: nothing).
    pub(crate) fn named_last(&self) -> u64 {
        self.tlogs.map_or_else(
            || {
                self.checkpoint
                    .map_or(0, |c| c.0)
                    .max(self.lineage.base_tlog())
            },
            |t| t.1,
        )
    }

    /// The XML text.
    pub(crate) fn to_xml(&self) -> Vec<u8> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        let id = self.volume.to_string();
        let plain = self.lineage.is_empty() && self.template == 0;
        let format = if plain {
            MANIFEST_FORMAT_PLAIN
        } else {
            MANIFEST_FORMAT
        }
        .to_string();
        let generation = self.generation.to_string();
        let cs = CLUSTER_SIZE.to_string();
        // Writing into a Vec cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let root = BytesStart::new("strata-volume").with_attributes([
            ("format", format.as_str()),
            ("id", id.as_str()),
            ("generation", generation.as_str()),
            ("cluster-size", cs.as_str()),
        ]);
        let _ = w.write_event(Event::Start(root));
        if let Some((first, last)) = self.tlogs {
            let (f, l) = (first.to_string(), last.to_string());
            let t = BytesStart::new("tlogs")
                .with_attributes([("first", f.as_str()), ("last", l.as_str())]);
            let _ = w.write_event(Event::Empty(t));
        }
        for (first, epoch) in self.epochs.ranges() {
            let (f, e) = (first.to_string(), epoch.to_string());
            let t = BytesStart::new("epoch")
                .with_attributes([("first-tlog", f.as_str()), ("epoch", e.as_str())]);
            let _ = w.write_event(Event::Empty(t));
        }
        for a in self.lineage.ancestors() {
            let (v, l) = (a.volume.to_string(), a.last_tlog.to_string());
            let epochs: Vec<String> = a
                .epochs
                .ranges()
                .iter()
                .map(|(f, e)| format!("{f}:{e}"))
                .collect();
            let epochs = epochs.join(" ");
            let t = BytesStart::new("ancestor").with_attributes([
                ("volume", v.as_str()),
                ("last-tlog", l.as_str()),
                ("epochs", epochs.as_str()),
            ]);
            let _ = w.write_event(Event::Empty(t));
        }
        if self.template != 0 {
            let s = self.template.to_string();
            let t = BytesStart::new("template").with_attributes([("snapshot", s.as_str())]);
            let _ = w.write_event(Event::Empty(t));
        }
        if let Some((n, e)) = self.checkpoint {
            let (n, e) = (n.to_string(), e.to_string());
            let c = BytesStart::new("checkpoint")
                .with_attributes([("tlog", n.as_str()), ("epoch", e.as_str())]);
            let _ = w.write_event(Event::Empty(c));
        }
        let _ = w.write_event(Event::End(BytesEnd::new("strata-volume")));
        let mut out = w.into_inner();
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest. Unknown elements are ignored; a wrong format version,
    /// cluster size, lineage or malformed XML is an error (rules in `FORMATS.md`, "Clones and
    /// templates").
    pub(crate) fn from_xml(what: &str, xml: &[u8]) -> Result<Manifest, FormatError> {
        let bad = |reason: String| FormatError::Inconsistent {
            what: what.to_string(),
            reason,
        };
        let text = std::str::from_utf8(xml).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let mut r = Reader::from_str(text);
        r.config_mut().trim_text(true);
        let mut root: Option<(VolumeId, u64)> = None;
        let mut format = 0;
        let mut tlogs = None;
        let mut checkpoint = None;
        let mut epochs = Vec::new();
        let mut ancestors = Vec::new();
        let mut template = 0;
        loop {
            let ev = r.read_event().map_err(|e| bad(format!("XML: {e}")))?;
            let (e, _empty) = match &ev {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::Eof => break,
                _ => continue,
            };
            let mut attrs = std::collections::HashMap::new();
            for a in e.attributes() {
                let a = a.map_err(|e| bad(format!("XML attribute: {e}")))?;
                let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                let v = a
                    .unescape_value()
                    .map_err(|e| bad(format!("XML attribute: {e}")))?
                    .into_owned();
                attrs.insert(k, v);
            }
            let num = |k: &str| -> Result<u64, FormatError> {
                attrs
                    .get(k)
                    .ok_or_else(|| {
                        bad(format!(
                            "<{}> lacks {k}",
                            String::from_utf8_lossy(e.name().as_ref())
                        ))
                    })?
                    .parse::<u64>()
                    .map_err(|_| bad(format!("attribute {k} is not a number")))
            };
            match e.name().as_ref() {
                b"strata-volume" => {
                    let f = num("format")?;
                    format = f;
                    if !(u64::from(MANIFEST_FORMAT_MIN)..=u64::from(MANIFEST_FORMAT)).contains(&f) {
                        return Err(FormatError::BadVersion {
                            what: what.to_string(),
                            found: u16::try_from(f).unwrap_or(u16::MAX),
                        });
                    }
                    if num("cluster-size")? != CLUSTER_SIZE as u64 {
                        return Err(bad("cluster size differs".into()));
                    }
                    let id = attrs.get("id").ok_or_else(|| bad("no volume id".into()))?;
                    root = Some((
                        parse_id(id).ok_or_else(|| bad(format!("bad volume id {id:?}")))?,
                        num("generation")?,
                    ));
                }
                b"tlogs" if root.is_some() => {
                    let (first, last) = (num("first")?, num("last")?);
                    // u64::MAX is refused too: the next TLog number must exist.
                    if first == 0 || last < first || last == u64::MAX {
                        return Err(bad(format!("bad TLog range {first}..={last}")));
                    }
                    tlogs = Some((first, last));
                }
                b"checkpoint" if root.is_some() => {
                    let n = num("tlog")?;
                    // u64::MAX is refused: the next TLog number must exist.
                    if n == 0 || n == u64::MAX {
                        return Err(bad(format!("checkpoint of TLog {n}")));
                    }
                    // Format 1 has no epochs: its checkpoint keys have none (epoch 0).
                    let e = if format == 1 { 0 } else { num("epoch")? };
                    checkpoint = Some((n, e));
                }
                b"epoch" if root.is_some() => {
                    epochs.push((num("first-tlog")?, num("epoch")?));
                }
                b"ancestor" if root.is_some() && format >= 3 => {
                    let v = attrs
                        .get("volume")
                        .ok_or_else(|| bad("<ancestor> lacks volume".into()))?;
                    let volume =
                        parse_id(v).ok_or_else(|| bad(format!("bad ancestor volume {v:?}")))?;
                    let mut ranges = Vec::new();
                    for pair in attrs
                        .get("epochs")
                        .map_or("", |s| s.as_str())
                        .split_whitespace()
                    {
                        let (f, e) = pair
                            .split_once(':')
                            .and_then(|(f, e)| Some((f.parse().ok()?, e.parse().ok()?)))
                            .ok_or_else(|| bad(format!("bad ancestor epoch range {pair:?}")))?;
                        ranges.push((f, e));
                    }
                    let last_tlog = num("last-tlog")?;
                    if last_tlog == u64::MAX {
                        return Err(bad("ancestor up to TLog u64::MAX".into()));
                    }
                    ancestors.push(Ancestor {
                        volume,
                        last_tlog,
                        epochs: Epochs::new(ranges).map_err(bad)?,
                    });
                }
                b"template" if root.is_some() && format >= 3 => {
                    template = num("snapshot")?;
                    if template == 0 {
                        return Err(bad("template of snapshot 0".into()));
                    }
                }
                _ => {}
            }
        }
        let (volume, generation) = root.ok_or_else(|| bad("no <strata-volume> element".into()))?;
        let lineage = Lineage::new(ancestors).map_err(bad)?;
        let base = lineage.base_tlog();
        match (checkpoint, tlogs) {
            (Some((n, _)), Some((_, last))) if n > last => {
                return Err(bad(format!("checkpoint {n} after the last TLog {last}")));
            }
            // Without TLogs (a clone, or a flattened one, that wrote nothing of its own yet) the
            // checkpoint holds everything.
            _ => {}
        }
        if base > 0 {
            if tlogs.is_some_and(|(first, _)| first != base + 1) {
                return Err(bad(format!(
                    "a clone's TLogs must start after its lineage's last TLog {base}"
                )));
            }
            if checkpoint.is_none_or(|(n, _)| n < base) {
                return Err(bad(format!(
                    "a clone needs a checkpoint at or after its lineage's last TLog {base}"
                )));
            }
        }
        let epochs = Epochs::new(epochs).map_err(bad)?;
        let beyond = epochs.ranges().last().map(|r| r.0);
        if let Some(f) = beyond.filter(|f| tlogs.is_none_or(|(_, last)| *f > last)) {
            return Err(bad(format!(
                "epoch range from TLog {f}, past the TLogs named"
            )));
        }
        Ok(Manifest {
            volume,
            generation,
            tlogs,
            checkpoint,
            epochs,
            lineage,
            template,
        })
    }
}

fn parse_id(s: &str) -> Option<VolumeId> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(VolumeId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_rejects_other_formats() {
        let mut m = Manifest::new(VolumeId([0xab; 16]));
        assert_eq!(Manifest::from_xml("m", &m.to_xml()), Ok(m.clone()));
        m.tlogs = Some((1, 42));
        m.generation = 7;
        let xml = m.to_xml();
        assert_eq!(Manifest::from_xml("m", &xml), Ok(m.clone()));
        let text = String::from_utf8(xml).expect("utf8");
        assert!(text.contains("<tlogs first=\"1\" last=\"42\"/>"), "{text}");
        assert!(!text.contains("checkpoint"), "{text}");
        m.checkpoint = Some((40, 3));
        m.epochs = Epochs::new(vec![(1, 2), (30, 3)]).expect("ranges");
        let with = m.to_xml();
        assert_eq!(Manifest::from_xml("m", &with), Ok(m.clone()));
        let t = String::from_utf8_lossy(&with);
        assert!(t.contains("<checkpoint tlog=\"40\" epoch=\"3\"/>"), "{t}");
        assert!(t.contains("<epoch first-tlog=\"30\" epoch=\"3\"/>"), "{t}");
        // Epoch ranges must ascend and stay within the TLogs named.
        let t = t.into_owned();
        let past = t.replace("first-tlog=\"30\"", "first-tlog=\"43\"");
        assert!(Manifest::from_xml("m", past.as_bytes()).is_err());
        let down = t.replace(
            "first-tlog=\"30\" epoch=\"3\"",
            "first-tlog=\"30\" epoch=\"1\"",
        );
        assert!(Manifest::from_xml("m", down.as_bytes()).is_err());
        // Format 1 (before epochs): no ranges, and the checkpoint's keys have no epoch.
        let v1 = format!(
            "<strata-volume format=\"1\" id=\"{}\" generation=\"3\" cluster-size=\"4096\">\
             <tlogs first=\"1\" last=\"9\"/><checkpoint tlog=\"5\"/></strata-volume>",
            m.volume
        );
        let old = Manifest::from_xml("m", v1.as_bytes()).expect("format 1");
        assert_eq!(
            (old.checkpoint, old.epochs.ranges()),
            (Some((5, 0)), &[][..])
        );
        // Epoch ranges need the TLogs they name; the TLog range must leave room for the next.
        let text = String::from_utf8_lossy(&with).into_owned();
        let no_tlogs = text.replace("<tlogs first=\"1\" last=\"42\"/>", "");
        assert!(no_tlogs != text, "{text}");
        assert!(Manifest::from_xml("m", no_tlogs.as_bytes()).is_err());
        let huge = text.replace("last=\"42\"", &format!("last=\"{}\"", u64::MAX));
        assert!(Manifest::from_xml("m", huge.as_bytes()).is_err());
        let v4 = text.replace("format=\"2\"", "format=\"4\"");
        assert!(v4 != text);
        assert!(matches!(
            Manifest::from_xml("m", v4.as_bytes()),
            Err(FormatError::BadVersion { .. })
        ));
        // A clone's (format 3): its lineage, and a checkpoint at or after the lineage's end
        // before its own first TLog.
        let parent = crate::volume::clone::Ancestor {
            volume: VolumeId([7; 16]),
            last_tlog: 41,
            epochs: Epochs::new(vec![(1, 2), (30, 5)]).expect("ranges"),
        };
        let mut c = Manifest::new(m.volume);
        c.lineage = crate::volume::clone::Lineage::new(vec![parent]).expect("lineage");
        c.checkpoint = Some((41, 6));
        c.template = 3;
        let xml = c.to_xml();
        assert!(String::from_utf8_lossy(&xml).contains("format=\"3\""));
        assert_eq!(Manifest::from_xml("m", &xml), Ok(c.clone()));
        assert_eq!(c.named_last(), 41);
        c.tlogs = Some((42, 50));
        c.epochs = Epochs::new(vec![(42, 6)]).expect("ranges");
        assert_eq!(Manifest::from_xml("m", &c.to_xml()), Ok(c.clone()));
        for bad in [
            Manifest {
                tlogs: Some((40, 50)),
                ..c.clone()
            },
            Manifest {
                checkpoint: Some((40, 6)),
                ..c.clone()
            },
            Manifest {
                checkpoint: None,
                ..c.clone()
            },
        ] {
            assert!(Manifest::from_xml("m", &bad.to_xml()).is_err(), "{bad:?}");
        }
        // A build before clones (format 2 at most) refuses it rather than read it whole.
        assert!(Manifest::from_xml("m", b"<strata-volume format=\"1\"").is_err());
        assert!(Manifest::from_xml("m", b"<other/>").is_err());
    }
}

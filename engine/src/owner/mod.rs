//! Who owns the backend: the owner record (`record.rs`) and the rules a gateway follows at
//! every start before anything else touches the backend (`claim.rs`). See `FORMATS.md`,
//! "Owner record".

mod claim;
mod record;

pub(crate) use claim::{claim, get_bounded, read_record, Claimant, MANIFEST_MAX};
pub use record::{OwnerRecord, OWNER_KEY};

//! JSON helpers shared by every file format llmtop writes.

use serde::Deserialize;

/// JSON has no NaN: serde_json writes a non-finite f64 as `null`. Read it back as NaN (shown
/// as "n/a") so a file with an undefined rate still loads.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

//! The evaluation chart: capture against budget for every method, as a PNG.
//!
//! Takes: the [`MethodResult`]s of one evaluation. Gives: a two-panel PNG —
//! accesses captured by the top keys, and bytes read captured within a byte
//! budget — with one curve per method, drawn by [`crate::chart`] (so every
//! method keeps its colour in both panels and in [`series_colours`]); a
//! trace without sizes gets a note in the byte panel instead of an empty
//! plot.

use std::path::Path;

pub use crate::chart::{HEIGHT, WIDTH, series_colours};
use crate::chart::{Panel, Series};

use super::ModelError;
use super::evaluate::{CURVE_PERCENT, MethodResult, curve_budget};

/// Draws `results` to `path`; `subtitle` says which cut-off and horizon.
pub fn write_chart(
    path: &Path,
    subtitle: &str,
    results: &[MethodResult],
) -> Result<(), ModelError> {
    let panel =
        |title: &str, x_label: &str, y_label: &str, curve: fn(&MethodResult) -> &[f64]| Panel {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            x_range: 0.0..CURVE_PERCENT as f64,
            x_format: |x| format!("{x:.0}%"),
            series: results
                .iter()
                .map(|result| Series {
                    name: result.method.clone(),
                    points: std::iter::once((0.0, 0.0))
                        .chain(
                            curve(result)
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (100.0 * curve_budget(i), *v)),
                        )
                        .collect(),
                })
                .collect(),
            empty_note: "no bytes read in this trace (no sizes)".to_string(),
        };
    let panels = [
        panel(
            "Accesses captured by the top keys",
            "budget (% of keys pre-migrated)",
            "share of the horizon's accesses",
            |r| &r.curve_keys,
        ),
        panel(
            "Bytes read captured within a byte budget",
            "budget (% of bytes pre-migrated)",
            "share of the horizon's bytes read",
            |r| &r.curve_bytes,
        ),
    ];
    crate::chart::write_png(path, &format!("Capture vs budget — {subtitle}"), &panels).map_err(
        |problem| ModelError::Chart {
            path: path.to_path_buf(),
            problem,
        },
    )
}
